"""HTTP caching over the real app, PostgreSQL and Redis: public catalogue GETs with ETags and 304s;
per-user data, POSTs, errors and mutations never stored by shared caches."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import brotli  # type: ignore[import-untyped]
import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from mlc_graph.execution.cache_policy import CachePolicy
from mlc_graph.guards.persisted import document_hash
from mlc_graph.http.caching import entity_tag, none_match, vary
from resolvers.relay import encode_global_id
from tests.support.database import REDIS_URL
from tests.support.factories import make_catalogue, make_org, make_teacher
from tests.support.http import app_client, bearer, http_settings

LIBRARY = (
    "query Library { games(first: 20) { totalCount edges { node { id title description "
    "category { name } level { name } } } } }"
)
CATEGORIES = "query Categories { categories { id name } }"
ME = "query Me { viewer { role } }"
RATE_LIMIT_HEADERS = ("RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining")


def persisted(text: str) -> dict[str, str]:
    """The GET parameters of a document sent by hash (APQ), as Apollo's and urql's links send them."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(text)}}
    return {"extensions": orjson.dumps(extensions).decode()}


@pytest.fixture
async def catalogue(clean_db: asyncpg.Pool) -> dict[str, Any]:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    _category, _level, games = await make_catalogue(clean_db, games=12)
    await clean_db.execute("UPDATE games SET description = repeat('A long description. ', 10)")
    return {"pool": clean_db, "org": org, "teacher": teacher, "games": games}


@pytest.fixture(params=["compiled", "graphql-core"])
async def client(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The app with Redis admission (the RateLimit headers), on either executor: the policy is the
    document's, whichever runs it."""
    settings = http_settings(
        database_url,
        redis_url=REDIS_URL,
        redis_prefix=f"test:{uuid.uuid4().hex}:",
        executor=request.param,
    )
    async with app_client(settings) as client:
        yield client


async def register(client: TestClient[Any, Any], text: str, headers: dict[str, str]) -> ClientResponse:
    """APQ's second try: the document with its hash, POSTed (Apollo's link does it over GET too)."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(text)}}
    response = await client.post("/graphql", json={"query": text, "extensions": extensions}, headers=headers)
    assert response.status == 200, await response.text()
    return response


async def remaining(client: TestClient[Any, Any], headers: dict[str, str]) -> int:
    response = await client.post("/graphql", json={"query": ME}, headers=headers)
    return int(response.headers["RateLimit-Remaining"])


async def test_a_persisted_catalogue_get_is_public_with_an_etag(
    client: TestClient[Any, Any], catalogue: dict[str, Any]
) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    posted = await register(client, LIBRARY, teacher)
    assert posted.headers["Cache-Control"] == "no-store"  # POST never
    assert "ETag" not in posted.headers
    before = await remaining(client, teacher)

    response = await client.get("/graphql", params=persisted(LIBRARY), headers=teacher)
    body = await response.read()
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    vary = [v.strip() for v in response.headers["Vary"].split(",")]
    assert {"Accept", "Accept-Encoding", "Origin"} <= set(vary) and "Authorization" not in vary
    assert not set(RATE_LIMIT_HEADERS) & set(response.headers)  # nothing of the caller's in a shared answer
    payload = orjson.loads(body)
    assert payload["data"]["games"]["totalCount"] == 12
    # The budget is the caller's tier's: a shared answer leaves it out.
    assert "budget" not in payload["extensions"]["cost"]
    assert payload["extensions"]["cost"]["requestedQueryCost"] > 0

    # The same request: the same bytes, the same tag; answered 304 when the client has them.
    again = await client.get("/graphql", params=persisted(LIBRARY), headers=teacher)
    assert (again.headers["ETag"], await again.read()) == (etag, body)
    for if_none_match in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        cached = await client.get(
            "/graphql", params=persisted(LIBRARY), headers={**teacher, "If-None-Match": if_none_match}
        )
        assert cached.status == 304, if_none_match
        assert await cached.read() == b""
        assert cached.headers["ETag"] == etag
        assert cached.headers["Cache-Control"] == "public, max-age=300"
        assert cached.headers["Vary"] == response.headers["Vary"]
        assert not set(RATE_LIMIT_HEADERS) & set(cached.headers)
    stale = await client.get(
        "/graphql", params=persisted(LIBRARY), headers={**teacher, "If-None-Match": '"nope"'}
    )
    assert stale.status == 200 and await stale.read() == body
    # Every GET was still counted against the caller's quota (2 + 4 + 1, then the POST that reads it).
    assert await remaining(client, teacher) == before - 8

    # Another organization's user is served the same bytes: the catalogue is not tenant data.
    other_org = await make_org(catalogue["pool"], "Other", tier="PRELUDE")
    other = await make_teacher(catalogue["pool"], other_org)
    theirs = await client.get(
        "/graphql", params=persisted(LIBRARY), headers=bearer("teacher", other, other_org)
    )
    assert (theirs.headers["ETag"], await theirs.read()) == (etag, body)

    # A renamed game: a new answer, a new tag, and the old tag no longer matches.
    await catalogue["pool"].execute(
        "UPDATE games SET title = 'Renamed' WHERE id = $1", catalogue["games"][-1]
    )
    changed = await client.get(
        "/graphql", params=persisted(LIBRARY), headers={**teacher, "If-None-Match": etag}
    )
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert b"Renamed" in await changed.read()


async def test_full_text_get_and_media_types(client: TestClient[Any, Any], catalogue: dict[str, Any]) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    plain = await client.get("/graphql", params={"query": CATEGORIES}, headers=teacher)
    assert plain.status == 200
    assert plain.headers["Cache-Control"] == "public, max-age=3600"
    assert plain.headers["Content-Type"] == "application/json; charset=utf-8"
    graphql = await client.get(
        "/graphql",
        params={"query": CATEGORIES},
        headers={**teacher, "Accept": "application/graphql-response+json"},
    )
    assert graphql.headers["Content-Type"] == "application/graphql-response+json; charset=utf-8"
    # Same bytes, same tag: what differs is the Content-Type, which is why the answer varies on Accept.
    assert await graphql.read() == await plain.read()
    assert "Accept" in graphql.headers["Vary"]


async def test_each_content_encoding_has_its_own_tag(
    client: TestClient[Any, Any], catalogue: dict[str, Any]
) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    tags: dict[str, str] = {}
    bodies: dict[str, bytes] = {}
    for accept in ("br", "gzip", "identity"):
        response = await client.get(
            "/graphql",
            params={"query": LIBRARY},
            headers={**teacher, "Accept-Encoding": accept},
            auto_decompress=False,
        )
        assert response.status == 200
        tags[accept] = response.headers["ETag"]
        raw = await response.read()
        encoding = response.headers.get("Content-Encoding")
        assert encoding == (None if accept == "identity" else accept)
        bodies[accept] = (
            brotli.decompress(raw) if accept == "br" else gzip.decompress(raw) if accept == "gzip" else raw
        )
    assert len(bodies["identity"]) > 1024  # big enough to be compressed
    assert bodies["br"] == bodies["gzip"] == bodies["identity"]
    assert len(set(tags.values())) == 3
    assert tags["br"].endswith('-br"') and tags["gzip"].endswith('-gzip"')
    # A client holding the gzip copy asks with brotli: a different representation, a full answer.
    response = await client.get(
        "/graphql",
        params={"query": LIBRARY},
        headers={**teacher, "Accept-Encoding": "br", "If-None-Match": tags["gzip"]},
        auto_decompress=False,
    )
    assert response.status == 200 and response.headers["ETag"] == tags["br"]
    response = await client.get(
        "/graphql",
        params={"query": LIBRARY},
        headers={**teacher, "Accept-Encoding": "gzip", "If-None-Match": tags["gzip"]},
        auto_decompress=False,
    )
    assert response.status == 304


async def test_answers_reading_the_viewer_or_the_org_are_not_public(
    client: TestClient[Any, Any], catalogue: dict[str, Any]
) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    for text in (ME, "{ categories { name } viewer { role } }", "{ viewer { rateLimit { remaining } } }"):
        response = await client.get("/graphql", params={"query": text}, headers=teacher)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store", text
        assert "ETag" not in response.headers
        assert "RateLimit-Remaining" in response.headers
    # A game by id: admins see drafts too, so the caller's own cache only, keyed on the token.
    game_id = encode_global_id("Game", catalogue["games"][0])
    text = f'{{ game(id: "{game_id}") {{ title category {{ name }} }} }}'
    response = await client.get("/graphql", params={"query": text}, headers=teacher)
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert "Authorization" in response.headers["Vary"]
    assert "RateLimit-Remaining" in response.headers  # a private answer may carry the caller's own
    etag = response.headers["ETag"]
    assert "budget" in orjson.loads(await response.read())["extensions"]["cost"]
    cached = await client.get("/graphql", params={"query": text}, headers={**teacher, "If-None-Match": etag})
    assert cached.status == 304 and cached.headers["Cache-Control"] == "private, max-age=300"


async def test_post_errors_mutations_and_dry_runs_are_no_store(
    client: TestClient[Any, Any], catalogue: dict[str, Any]
) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    posted = await client.post("/graphql", json={"query": CATEGORIES}, headers=teacher)
    assert posted.status == 200 and posted.headers["Cache-Control"] == "no-store"
    requests: list[tuple[dict[str, str], dict[str, str], int]] = [
        ({"query": "{ games(first: 500) { totalCount } }"}, teacher, 200),  # a field error
        ({"query": '{ game(id: "nope") { title } }'}, teacher, 200),  # a field error on a private field
        ({"query": "{ categories { nope } }"}, teacher, 200),  # validation
        ({"query": "{ categories { name "}, teacher, 200),  # syntax
        ({"query": CATEGORIES}, {}, 401),  # no token
        (persisted("{ categories { id } }"), teacher, 200),  # PERSISTED_QUERY_NOT_FOUND
        ({"query": "mutation { endSession { ended } }"}, teacher, 405),
        ({"query": CATEGORIES}, {**teacher, "X-Cost-Dry-Run": "1"}, 200),  # no data: nothing to keep
    ]
    for params, headers, status in requests:
        response = await client.get("/graphql", params=params, headers=headers)
        assert response.status == status, (params, await response.text())
        assert response.headers["Cache-Control"] == "no-store", params
        assert "ETag" not in response.headers
        assert response.status != 304
    mutation = await client.post(
        "/graphql", json={"query": "mutation { endSession { ended } }"}, headers=teacher
    )
    assert mutation.status == 200 and mutation.headers["Cache-Control"] == "no-store"
    probe = await client.get("/healthz")
    assert probe.headers["Cache-Control"] == "no-store"


async def test_if_none_match_on_a_no_store_answer_is_ignored(
    client: TestClient[Any, Any], catalogue: dict[str, Any]
) -> None:
    teacher = bearer("teacher", catalogue["teacher"], catalogue["org"])
    response = await client.get("/graphql", params={"query": ME}, headers={**teacher, "If-None-Match": "*"})
    assert response.status == 200
    assert orjson.loads(await response.read())["data"] == {"viewer": {"role": "TEACHER"}}


def test_if_none_match_lists_and_weak_comparison() -> None:
    etag = entity_tag(b"{}", None)
    assert none_match([etag], etag)
    assert none_match([f"W/{etag}"], etag)  # If-None-Match compares weakly (RFC 9110 13.1.2)
    assert none_match(['"a", "b,c"', f" {etag} "], etag)  # a list, over several headers
    assert none_match(["*"], etag)
    assert not none_match(['"a", W/"b"', ""], etag)
    assert not none_match([etag.strip('"')], etag)  # a tag is quoted
    assert entity_tag(b"{}", "gzip") != etag


def test_vary_names_what_the_bytes_depend_on() -> None:
    assert vary(CachePolicy(60, public=True), compression=True) == (
        "Accept, Accept-Encoding, Origin, X-Cost-Include-Fields, X-Cost-Dry-Run"
    )
    assert vary(CachePolicy(60, public=False), compression=False) == (
        "Accept, Origin, X-Cost-Include-Fields, X-Cost-Dry-Run, Authorization"
    )
