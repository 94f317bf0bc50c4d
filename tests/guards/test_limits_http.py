"""Request limits: each refuses its attack with its own code; the product's own documents all pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import get_introspection_query, parse, validate
from graphql.language import Lexer, Source, TokenKind

from bench.workloads import WORKLOADS
from mlc_graph.app import create_app
from mlc_graph.execution.stages import Watch
from mlc_graph.guards.limits import Limits, check_document, exceeds_tokens, prescan
from mlc_graph.platform.db import QueryStats
from resolvers.schema import schema
from tests.guards.test_cost import BOMB
from tests.support.http import GRAPHQL_RESPONSE, bearer, http_settings

LIMITS = Limits()
INTROSPECTION_BOMB = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"


def codes(query: str, limits: Limits = LIMITS) -> list[str]:
    return [error.extensions["code"] for error in check_document(parse(query), limits)]  # type: ignore[index]


def nested(depth: int) -> str:
    """`games { edges { node { category { games ... } } } }` with `depth` levels of fields."""
    levels = ["games", "edges", "node", "category"]
    opened = [levels[i % 4] for i in range(depth - 1)]
    return "{ " + " { ".join(opened) + " { __typename" + " }" * len(opened) + " }"


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.key)
def test_product_documents_pass(workload: object) -> None:
    assert codes(workload.document) == []  # type: ignore[attr-defined]


def test_introspection_query_passes_every_limit() -> None:
    document = parse(get_introspection_query(descriptions=True))
    assert check_document(document, LIMITS) == []
    assert validate(schema._schema, document) == []


def test_depth_counts_relay_wrappers_and_fragments() -> None:
    assert codes(nested(15)) == []
    assert codes(nested(16)) == ["QUERY_TOO_DEEP"]
    through_fragment = (
        "{ games { edges { node { ...Deep } } } } "
        "fragment Deep on Game { category { games { edges { node { ...More } } } } } "
        "fragment More on Game { category { games { edges { node { category { games { edges { node { id } } } } } } } } }"
    )
    # games edges node | category games edges node | category games edges node category games edges node id
    assert codes(through_fragment) == ["QUERY_TOO_DEEP"]
    assert codes(nested(6), Limits(max_depth=5)) == ["QUERY_TOO_DEEP"]


def test_fragment_cycles_do_not_hang_the_depth_check() -> None:
    assert (
        codes(
            "{ games { ...A } } fragment A on GameConnection { ...B } fragment B on GameConnection { ...A }"
        )
        == []
    )


def test_aliases() -> None:
    assert codes("{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }") == []
    assert codes("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }") == ["TOO_MANY_ALIASES"]


def test_directives_per_field() -> None:
    five = "@skip(if: false) " * 5
    assert codes("{ __typename " + five + "}") == []
    assert codes("{ __typename " + five + "@include(if: true) }") == ["TOO_MANY_DIRECTIVES"]
    assert codes("{ ... " + five * 2 + "{ __typename } }") == ["TOO_MANY_DIRECTIVES"]


def test_repeated_fields_count_through_inline_fragments() -> None:
    assert codes("{ " + "__typename " * 10 + "}") == []
    assert codes("{ " + "__typename " * 11 + "}") == ["TOO_MANY_REPEATED_FIELDS"]
    spread = "{ " + "... on Query { __typename } " * 11 + "}"
    assert codes(spread) == ["TOO_MANY_REPEATED_FIELDS"]
    deep = '{ game(id: "x") { ' + "title " * 11 + "} }"
    assert codes(deep) == ["TOO_MANY_REPEATED_FIELDS"]


def test_introspection_bombs_are_refused_by_graphql_cores_rule() -> None:
    errors = validate(schema._schema, parse(INTROSPECTION_BOMB))
    assert [e.message for e in errors] == ["Maximum introspection depth exceeded"]


# --- over HTTP: status, code, no database work, and the server keeps answering ------------------------

Client = TestClient[Any, Any]
VIEWER = "{ viewer { role } }"
SEEN: list[QueryStats] = []


# Keeps each request's statement counter, to prove refusals never reach the database.
RECORD_STATS = [Watch(lambda request: SEEN.append(request.context.stats))]


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = http_settings(database_url, max_body_bytes=200_000, batching_enabled=True)
    async with TestClient(TestServer(create_app(settings, first_stages=RECORD_STATS))) as client:
        yield client


@pytest.fixture(scope="module")
def auth() -> dict[str, str]:
    # An organization that does not exist is on the free trial: the default per-operation budget.
    return bearer("teacher", 1, 999_999)


async def post(
    client: Client, payload: Any, auth: dict[str, str], media: str = GRAPHQL_RESPONSE, **headers: str
) -> tuple[int, Any]:
    SEEN.clear()
    response = await client.post("/graphql", json=payload, headers={**auth, "Accept": media, **headers})
    return response.status, orjson.loads(await response.read())


async def still_answers(client: Client, auth: dict[str, str]) -> None:
    status, payload = await post(client, {"query": VIEWER}, auth)
    assert (status, payload["data"]) == (200, {"viewer": {"role": "TEACHER"}})


ATTACKS = {
    "QUERY_TOO_DEEP": nested(16),
    "TOO_MANY_ALIASES": "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }",
    "TOO_MANY_DIRECTIVES": "{ __typename " + "@skip(if: false) " * 6 + "}",
    "TOO_MANY_REPEATED_FIELDS": "{ " + "__typename " * 11 + "}",
    "TOKEN_LIMIT_EXCEEDED": "{ __typename(" + "a: 1 " * 2000 + ") }",
    "GRAPHQL_VALIDATION_FAILED": INTROSPECTION_BOMB,
    "QUERY_TOO_COMPLEX": BOMB,
    "DOCUMENT_TOO_LARGE": '{ __typename(a: "' + "x" * 60_000 + '") }',
}


@pytest.mark.parametrize(("expected", "query"), ATTACKS.items(), ids=list(ATTACKS))
async def test_each_limit_refuses_without_touching_the_database(
    client: Client, auth: dict[str, str], expected: str, query: str
) -> None:
    status, payload = await post(client, {"query": query}, auth)
    assert status == 400
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == expected
    assert [stats.statements for stats in SEEN] == [0]
    # application/json clients get the spec's 200 for GraphQL request errors.
    status, payload = await post(client, {"query": query}, auth, media="application/json")
    assert (status, payload["errors"][0]["extensions"]["code"]) == (200, expected)
    await still_answers(client, auth)


async def test_over_budget_names_cost_budget_and_path(client: Client, auth: dict[str, str]) -> None:
    _, payload = await post(client, {"query": BOMB}, auth)
    extensions = payload["errors"][0]["extensions"]
    assert (extensions["cost"], extensions["budget"]) == (10301, 5000)
    assert extensions["path"] == "games.edges.node.category.games"


async def test_budget_counts_variables(client: Client, auth: dict[str, str]) -> None:
    query = "query($n: Int) { games(first: $n) { edges { node { category { games(first: $n) { edges { node { id } } } } } } } }"
    status, payload = await post(client, {"query": query, "variables": {"n": 100}}, auth)
    assert (status, payload["errors"][0]["extensions"]["code"]) == (400, "QUERY_TOO_COMPLEX")
    status, payload = await post(client, {"query": query, "variables": {"n": 10}}, auth)
    assert status == 200
    assert payload["extensions"]["cost"]["requestedQueryCost"] == 1 + 10 * (3 + 10)


async def test_executed_responses_carry_cost(client: Client, auth: dict[str, str]) -> None:
    status, payload = await post(
        client, {"query": "{ viewer { role teacher { id } } categories { name } }"}, auth
    )
    assert status == 200
    cost = payload["extensions"]["cost"]
    # viewer 1 + teacher 1, categories: 20 assumed x 1; actually returned: viewer only (no such teacher)
    assert cost["budget"] == 5000
    assert cost["requestedQueryCost"] >= cost["actualQueryCost"] >= 1
    assert "fields" not in cost


async def test_include_fields_header_adds_the_breakdown(client: Client, auth: dict[str, str]) -> None:
    _, payload = await post(
        client, {"query": BOMB.replace("100", "5")}, auth, **{"X-Cost-Include-Fields": "true"}
    )
    fields = {entry["path"]: entry for entry in payload["extensions"]["cost"]["fields"]}
    assert fields["games.edges.node.category.games"]["count"] == 5


@pytest.mark.parametrize("how", ["header", "extensions"])
async def test_dry_run_prices_without_executing(client: Client, auth: dict[str, str], how: str) -> None:
    payload: dict[str, Any] = {"query": "{ games(first: 30) { edges { node { id } } } }"}
    headers = {"X-Cost-Dry-Run": "true"} if how == "header" else {}
    if how == "extensions":
        payload["extensions"] = {"dryRun": True}
    status, answer = await post(client, payload, auth, **headers)
    assert status == 200
    assert answer["data"] is None
    assert answer["extensions"]["cost"] == {"requestedQueryCost": 31, "actualQueryCost": 0, "budget": 5000}
    assert [stats.statements for stats in SEEN] == [0]


async def test_oversized_body_and_batches(client: Client, auth: dict[str, str]) -> None:
    status, payload = await post(client, {"query": "{ __typename }", "pad": "x" * 300_000}, auth)
    assert (status, payload["errors"][0]["extensions"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    status, payload = await post(client, [{"query": VIEWER}] * 11, auth)
    assert (status, payload["errors"][0]["extensions"]["code"]) == (400, "BATCH_LIMIT_EXCEEDED")
    status, payload = await post(client, [{"query": VIEWER}] * 2, auth)
    assert status == 200
    assert [p["data"] for p in payload] == [{"viewer": {"role": "TEACHER"}}] * 2
    await still_answers(client, auth)


async def test_batching_is_off_by_default(database_url: str, auth: dict[str, str]) -> None:
    async with TestClient(
        TestServer(create_app(http_settings(database_url), first_stages=RECORD_STATS))
    ) as plain:
        status, payload = await post(plain, [{"query": VIEWER}], auth)
        assert (status, payload["errors"][0]["extensions"]["code"]) == (400, "BATCHING_DISABLED")


async def test_budget_is_configurable(database_url: str, auth: dict[str, str]) -> None:
    settings = http_settings(database_url, cost_budget=10, max_depth=4)
    async with TestClient(TestServer(create_app(settings, first_stages=RECORD_STATS))) as strict:
        status, payload = await post(
            strict, {"query": "{ games(first: 10) { edges { node { id } } } }"}, auth
        )
        assert (status, payload["errors"][0]["extensions"]["code"]) == (400, "QUERY_TOO_COMPLEX")
        assert payload["errors"][0]["extensions"]["budget"] == 10
        status, payload = await post(strict, {"query": nested(5)}, auth)
        assert payload["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"


def test_token_precount_matches_the_lexer() -> None:
    """The regex count equals the parser's (comments included), so it never refuses what the parser allows."""
    documents = [
        get_introspection_query(descriptions=True),
        '{ a(s: "x \\" y", b: """ block " "" \\""" """) # c\n ...F -1.5e3 }',
        *(w.document for w in WORKLOADS),
    ]
    for text in documents:
        lexer = Lexer(Source(text))
        count = 0
        while lexer.advance().kind is not TokenKind.EOF:
            count += 1
        count += text.count("#")  # the lexer skips comments; the parser's max_tokens counts them
        assert not exceeds_tokens(text, count)
        assert exceeds_tokens(text, count - 1) or len(text) <= count - 1


PRESCAN_DOCUMENTS = [
    get_introspection_query(descriptions=True),
    *(w.document for w in WORKLOADS),
    *ATTACKS.values(),
    "{ a: games { edges { node { id } } } b: games { totalCount } "
    + "... on Query { __typename } " * 12
    + "}",
    "query Q($x: Int = 3, $y: Boolean! @deprecated) @a @b @c @d @e @f { x: __typename @skip(if: $y) }",
    "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " f(a: {b: 1, c: [2], d: {e: 3}}) }",
    "fragment F on Game { "
    + "title " * 10
    + "} { games { edges { node { ...F ...F "
    + "id " * 10
    + "} } } }",
]


@pytest.mark.parametrize("text", PRESCAN_DOCUMENTS)
def test_prescan_refuses_nothing_the_document_check_allows(text: str) -> None:
    found = prescan(text, LIMITS, 5000)
    if found is None:
        return
    code = (found.extensions or {})["code"]
    if code == "TOKEN_LIMIT_EXCEEDED":
        assert exceeds_tokens(text, 5000)
    else:
        assert code in codes(text)


@pytest.mark.parametrize("expected", ["TOO_MANY_ALIASES", "TOO_MANY_DIRECTIVES", "TOO_MANY_REPEATED_FIELDS"])
def test_prescan_catches_the_attacks_before_parsing(expected: str) -> None:
    found = prescan(ATTACKS[expected], LIMITS, 5000)
    assert found is not None
    assert (found.extensions or {})["code"] == expected


BAD_INPUTS = [
    # (method, body bytes or query string, content type, status, code)
    ("POST", b'{"query": "{ __typename ', "application/json", 400, "BAD_REQUEST"),
    ("POST", b'{"query": "\xff\xfe"}', "application/json", 400, "BAD_REQUEST"),
    ("POST", b"query=%7B__typename%7D", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("POST", b'{"query": 5}', "application/json", 400, "BAD_REQUEST"),
    ("POST", b'{"query": "{ __typename }", "variables": [1]}', "application/json", 400, "BAD_REQUEST"),
    (
        "POST",
        b'{"query": "query($n: Int) { games(first: $n) { totalCount } }", "variables": {"n": "x"}}',
        "application/json",
        400,
        "BAD_USER_INPUT",
    ),
    ("POST", b'{"query": "{ nope }"}', "application/json", 400, "GRAPHQL_VALIDATION_FAILED"),
    ("POST", b'{"query": "{"}', "application/json", 400, "GRAPHQL_PARSE_FAILED"),
    (
        "GET",
        "query=mutation%20%7B%20endSession%20%7B%20__typename%20%7D%20%7D",
        "",
        405,
        "METHOD_NOT_ALLOWED",
    ),
]


@pytest.mark.parametrize(("method", "payload", "content_type", "status", "code"), BAD_INPUTS)
async def test_bad_inputs_get_a_4xx_and_a_code_without_sql(
    client: Client, auth: dict[str, str], method: str, payload: Any, content_type: str, status: int, code: str
) -> None:
    SEEN.clear()
    headers = {**auth, "Accept": GRAPHQL_RESPONSE}
    if method == "GET":
        response = await client.get(f"/graphql?{payload}", headers=headers)
    else:
        response = await client.post(
            "/graphql", data=payload, headers={**headers, "Content-Type": content_type}
        )
    answer = orjson.loads(await response.read())
    assert (response.status, answer["errors"][0]["extensions"]["code"]) == (status, code)
    assert all(stats.statements == 0 for stats in SEEN)
    await still_answers(client, auth)
