"""GraphQL over HTTP: content types, status codes, error codes, masking, caching, probes and workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import asyncpg
import orjson
import pytest
import strawberry
from aiohttp import web
from aiohttp.test_utils import TestClient
from graphql import DocumentNode, GraphQLError

from mlc_graph.app import create_app
from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.execution.documents import DocumentCheck, Documents
from mlc_graph.execution.pipeline import Pipeline
from mlc_graph.execution.request import GraphQLParams, OperationRequest
from mlc_graph.execution.stages import Admission, DocumentStage, Finisher, PersistedStage, Stage, Watch
from mlc_graph.guards import persisted
from mlc_graph.http.server import serve_app
from mlc_graph.keys import PIPELINE, POOL
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.config import ConfigError, Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import DatabaseUnavailableError, NotFoundError, Refusal
from resolvers.context import Context, make_context
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import (
    GRAPHQL_RESPONSE,
    app_client,
    bearer,
    free_port,
    http_settings,
    start_server,
    stop_server,
    wait_ready,
)

Client = TestClient[Any, Any]
VIEWER = "{ viewer { role teacher { displayName } } }"


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with app_client(http_settings(database_url, max_body_bytes=10_000)) as client:
        yield client


@pytest.fixture(scope="module")
async def teacher(pool: asyncpg.Pool) -> dict[str, str]:
    """One teacher for the whole module (emptying the database per test costs more than the tests)."""
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org, "Ada", "Lovelace")
    await factories.make_students(pool, org, teacher_id, 2)
    return bearer("teacher", teacher_id, org)


async def body(response: aiohttp.ClientResponse) -> Any:
    return orjson.loads(await response.read())


async def still_answers(client: Client, auth: dict[str, str]) -> None:
    response = await client.post("/graphql", json={"query": VIEWER}, headers=auth)
    assert response.status == 200
    assert (await body(response))["data"]["viewer"]["role"] == "TEACHER"


# --- the happy paths ---------------------------------------------------------------------------------


async def test_post_json_runs_the_query(client: Client, teacher: dict[str, str]) -> None:
    response = await client.post("/graphql", json={"query": VIEWER}, headers=teacher)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    payload = await body(response)
    assert payload["data"]["viewer"] == {"role": "TEACHER", "teacher": {"displayName": "A. Lovelace"}}
    assert payload["extensions"]["sqlStatements"] >= 1
    assert len(response.headers["X-Request-ID"]) >= 16


async def test_graphql_response_media_type_when_accepted(client: Client, teacher: dict[str, str]) -> None:
    headers = {**teacher, "Accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"}
    response = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(GRAPHQL_RESPONSE)


async def test_get_with_query_parameters(client: Client, teacher: dict[str, str]) -> None:
    params = {
        "query": "query Who($n: Int) { viewer { role } games(first: $n) { totalCount } }",
        "variables": '{"n": 1}',
        "operationName": "Who",
    }
    response = await client.get("/graphql", params=params, headers=teacher)
    assert response.status == 200
    assert (await body(response))["data"] == {"viewer": {"role": "TEACHER"}, "games": {"totalCount": 0}}


async def test_operation_name_picks_one_of_several(client: Client, teacher: dict[str, str]) -> None:
    document = "query A { viewer { role } } query B { __typename }"
    response = await client.post("/graphql", json={"query": document, "operationName": "B"}, headers=teacher)
    assert (await body(response))["data"] == {"__typename": "Query"}


async def test_request_id_is_echoed_when_sane_and_replaced_otherwise(client: Client) -> None:
    sane = await client.get("/healthz", headers={"X-Request-ID": "abc-123.x"})
    assert sane.headers["X-Request-ID"] == "abc-123.x"
    odd = await client.get("/healthz", headers={"X-Request-ID": "no spaces */ allowed"})
    assert odd.headers["X-Request-ID"] != "no spaces */ allowed"
    missing = await client.get("/nowhere")
    assert missing.status == 404
    assert (await body(missing))["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert missing.headers["X-Request-ID"]


# --- request errors: the status depends on the response media type -------------------------------


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ("{ viewer { role ", "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { rol } }", "GRAPHQL_VALIDATION_FAILED"),
        ("query A { viewer { role } } query B { __typename }", "BAD_REQUEST"),
    ],
)
async def test_request_errors(client: Client, teacher: dict[str, str], document: str, code: str) -> None:
    strict = await client.post(
        "/graphql", json={"query": document}, headers={**teacher, "Accept": GRAPHQL_RESPONSE}
    )
    assert strict.status == 400
    strict_body = await body(strict)
    assert "data" not in strict_body
    assert strict_body["errors"][0]["extensions"]["code"] == code
    legacy = await client.post("/graphql", json={"query": document}, headers=teacher)
    assert legacy.status == 200
    assert (await body(legacy))["errors"][0]["extensions"]["code"] == code
    await still_answers(client, teacher)


async def test_suggestions_shown_in_development(client: Client, teacher: dict[str, str]) -> None:
    response = await client.post("/graphql", json={"query": "{ viewer { rol } }"}, headers=teacher)
    assert "Did you mean" in (await body(response))["errors"][0]["message"]


async def test_wrong_variable_type(client: Client, teacher: dict[str, str]) -> None:
    document = "query G($first: Int) { games(first: $first) { totalCount } }"
    request = {"query": document, "variables": {"first": "many"}}
    strict = await client.post("/graphql", json=request, headers={**teacher, "Accept": GRAPHQL_RESPONSE})
    assert strict.status == 400
    payload = await body(strict)
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    legacy = await client.post("/graphql", json=request, headers=teacher)
    assert legacy.status == 400
    assert (await body(legacy))["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await still_answers(client, teacher)


async def test_mutation_over_get_is_405(client: Client, teacher: dict[str, str]) -> None:
    response = await client.get("/graphql", params={"query": "mutation { noSuchField }"}, headers=teacher)
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await body(response))["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    await still_answers(client, teacher)


async def test_subscription_over_post_is_refused(client: Client, teacher: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", json={"query": "subscription { x }"}, headers={**teacher, "Accept": GRAPHQL_RESPONSE}
    )
    assert response.status == 400


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'Application/JSON; charset="UTF-8"'],
)
async def test_json_content_type_variants(client: Client, teacher: dict[str, str], content_type: str) -> None:
    response = await client.post(
        "/graphql", data=b'{"query": "{ __typename }"}', headers={**teacher, "Content-Type": content_type}
    )
    assert response.status == 200


async def test_other_methods_are_405(client: Client) -> None:
    response = await client.put("/graphql", data=b"{}")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert (await body(response))["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


# --- malformed HTTP requests: 4xx with a clear code, never a 500, and the server keeps answering ------


@pytest.mark.parametrize(
    ("content_type", "data", "status", "code"),
    [
        ("text/plain", b'{"query": "{ __typename }"}', 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/x-www-form-urlencoded", b"query=%7B__typename%7D", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("multipart/form-data; boundary=x", b"--x--", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/json; charset=latin-1", b'{"query": "{ __typename }"}', 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            "application/json; x=1; charset=utf-16",
            b'{"query": "{ __typename }"}',
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("application/json", b'{"query": ', 400, "BAD_REQUEST"),
        ("application/json", b"", 400, "BAD_REQUEST"),
        ("application/json", b'"{ __typename }"', 400, "BAD_REQUEST"),
        ("application/json", b"42", 400, "BAD_REQUEST"),
        ("application/json", b'[{"query": "{ __typename }"}]', 400, "BATCHING_DISABLED"),
        ("application/json", b'{"query": 7}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "{ __typename }", "variables": [1]}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "{ __typename }", "variables": "x"}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "{ __typename }", "operationName": 1}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "{ __typename }", "extensions": 1}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "\xff\xfe"}', 400, "BAD_REQUEST"),
        ("application/json", b'{"variables": {}}', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": "' + b"a" * 20_000 + b'"}', 413, "PAYLOAD_TOO_LARGE"),
    ],
)
async def test_bad_requests(
    client: Client, teacher: dict[str, str], content_type: str, data: bytes, status: int, code: str
) -> None:
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await client.post(
            "/graphql", data=data, headers={**teacher, "Content-Type": content_type, "Accept": accept}
        )
        assert response.status == status
        payload = await body(response)
        assert payload["errors"][0]["extensions"]["code"] == code
        assert payload["errors"][0]["message"]
    await still_answers(client, teacher)


async def test_invalid_utf8_is_named(client: Client, teacher: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", data=b'{"query": "\xff"}', headers={**teacher, "Content-Type": "application/json"}
    )
    assert "UTF-8" in (await body(response))["errors"][0]["message"]


async def test_chunked_oversized_body_is_413(client: Client, teacher: dict[str, str]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b" " * 1000

    response = await client.post(
        "/graphql", data=chunks(), headers={**teacher, "Content-Type": "application/json"}
    )
    assert response.status == 413
    await still_answers(client, teacher)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"query": "{ __typename }", "variables": "{nope"}, "BAD_REQUEST"),
        ({"query": "{ __typename }", "variables": "[1]"}, "BAD_REQUEST"),
        ({"query": "{ __typename }", "extensions": "1"}, "BAD_REQUEST"),
        ({}, "BAD_REQUEST"),
    ],
)
async def test_bad_get_parameters(
    client: Client, teacher: dict[str, str], params: dict[str, str], code: str
) -> None:
    response = await client.get("/graphql", params=params, headers=teacher)
    assert response.status == 400
    assert (await body(response))["errors"][0]["extensions"]["code"] == code
    await still_answers(client, teacher)


async def test_unacceptable_accept_is_406(client: Client, teacher: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={**teacher, "Accept": "text/csv"}
    )
    assert response.status == 406
    assert (await body(response))["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


# --- caching, batching, development aids -------------------------------------------------------------


async def test_second_identical_request_hits_the_document_cache(
    client: Client, teacher: dict[str, str]
) -> None:
    cache = client.app[PIPELINE].cache
    document = "query CacheProbe { viewer { role } }"
    await client.post("/graphql", json={"query": document}, headers=teacher)
    hits, misses = cache.hits, cache.misses
    response = await client.post("/graphql", json={"query": document}, headers=teacher)
    assert response.status == 200
    # Not parsed again (no new miss); features may look the document up too, so hits only grow.
    assert cache.misses == misses
    assert cache.hits > hits


def test_document_cache_is_bounded() -> None:
    documents = Documents(_tiny_schema(), production=False, cache_size=2)
    for name in ("a", "b", "c"):
        documents.get(f"query {name} {{ ok }}")
    assert len(documents.cache) == 2
    documents.get("query a { ok }")
    assert documents.cache.hits == 0  # "a" was evicted first


async def test_batching_when_enabled(database_url: str, teacher: dict[str, str]) -> None:
    settings = http_settings(database_url, batching_enabled=True, max_batch_operations=2)
    async with app_client(settings) as client:
        batch = [{"query": VIEWER}, {"query": "{ __typename }"}]
        response = await client.post("/graphql", json=batch, headers=teacher)
        assert response.status == 200
        payload = await body(response)
        assert [p["data"] for p in payload][1] == {"__typename": "Query"}
        too_many = await client.post("/graphql", json=batch * 2, headers=teacher)
        assert too_many.status == 400
        assert (await body(too_many))["errors"][0]["extensions"]["code"] == "BATCH_LIMIT_EXCEEDED"
        empty = await client.post("/graphql", json=[], headers=teacher)
        assert empty.status == 400


async def test_graphiql_page_in_development(client: Client) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = await response.text()
    assert "https://" not in page and "http://" not in page  # nothing from a CDN
    script = await client.get("/graphiql/init.js")
    assert script.status == 200
    assert "Authorization" in await script.text()


# --- production ---------------------------------------------------------------------------------------


async def test_production_switch(database_url: str, teacher: dict[str, str]) -> None:
    settings = http_settings(database_url, env="production", debug_sql_count=False)
    async with app_client(settings) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status == 406
        assert page.headers["Content-Type"].startswith("application/json")
        assert (await client.get("/graphiql/init.js")).status == 404
        introspection = await client.post(
            "/graphql", json={"query": "{ __schema { types { name } } }"}, headers=teacher
        )
        error = (await body(introspection))["errors"][0]
        assert "introspection" in error["message"].lower()
        anonymous = await client.post("/graphql", json={"query": "{ __schema { queryType { name } } }"})
        assert anonymous.status == 401
        typo = await client.post("/graphql", json={"query": "{ viewer { rol } }"}, headers=teacher)
        assert "Did you mean" not in (await body(typo))["errors"][0]["message"]
        ok = await client.post("/graphql", json={"query": VIEWER}, headers=teacher)
        assert ok.status == 200
        # Production shows the cost (every executed response does), never the SQL statement count.
        assert set((await body(ok))["extensions"]) == {"cost"}


def test_production_refuses_to_start_without_a_real_secret() -> None:
    for secret in ("", "short", "mlc-dev-secret-not-for-production"):
        with pytest.raises(ConfigError):
            Settings.from_env({"MLC_ENV": "production", "MLC_JWT_SECRET": secret})
    assert Settings.from_env({"MLC_ENV": "production", "MLC_JWT_SECRET": "x" * 40}).production


def test_serve_refuses_production_without_a_secret(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLC_JWT_SECRET"}
    completed = subprocess.run(
        [sys.executable, "-m", "mlc_graph.cli", "serve", "--port", str(free_port())],
        env={**env, "MLC_ENV": "production", "DATABASE_URL": database_url},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert b"MLC_JWT_SECRET" in completed.stderr


# --- error masking (pipeline level, on a tiny schema whose resolvers fail on purpose) -----------------


@strawberry.type
class _Query:
    @strawberry.field
    def ok(self) -> int:
        return 1

    @strawberry.field
    def boom(self) -> int | None:
        raise RuntimeError("SELECT password_hash FROM students -- secret internals")

    @strawberry.field
    def missing(self) -> int | None:
        raise NotFoundError("Student not found")

    @strawberry.field
    def down(self) -> int | None:
        raise DatabaseUnavailableError("connection refused to 10.0.0.5")

    @strawberry.field
    def suggest(self, color: str) -> str:
        return color


def _tiny_schema() -> Any:
    return strawberry.Schema(query=_Query)._schema


def _tiny_pipeline(
    *,
    production: bool = False,
    executor: str = "compiled",
    max_tokens: int | None = None,
    checks: Sequence[DocumentCheck] = (),
    before: Sequence[Stage] = (),
    after: Sequence[Stage] = (),
    finishers: Sequence[Finisher] = (),
) -> Pipeline:
    """A pipeline on the tiny schema whose admission is the document stage between the given stages."""
    schema = _tiny_schema()
    documents = Documents(schema, production=production, cache_size=8, max_tokens=max_tokens, checks=checks)
    in_full = PersistedStage(persisted.build(Settings(), None, None))  # documents sent in full
    admission = Admission((in_full, *before, DocumentStage(documents), *after), tuple(finishers))
    compiled = CompiledExecutor.for_schema(schema) if executor == "compiled" else None
    return Pipeline(schema, documents, admission, compiled=compiled, production=production)


def _tiny_request(
    pool: asyncpg.Pool, query: str, production: bool = False, **extensions: Any
) -> OperationRequest:
    return OperationRequest(
        GraphQLParams(query, extensions=extensions or None), _tiny_context(pool, production)
    )


def _tiny_context(pool: asyncpg.Pool, production: bool = False) -> Context:
    return make_context(
        Settings(env="production" if production else "development"),
        Executor(pool, QueryStats()),
        Principal(Role.TEACHER, 1, 1, "s"),
        request_id="req-42",
    )


@pytest.fixture(params=["compiled", "graphql-core"])
def executor_name(request: pytest.FixtureRequest) -> str:
    """Masking must hold on both executors the pipeline can run."""
    name: str = request.param
    return name


async def _run_tiny(
    pool: asyncpg.Pool, query: str, executor: str = "compiled", production: bool = False
) -> tuple[Any, int]:
    pipeline = _tiny_pipeline(production=production, executor=executor)
    outcome = await pipeline.run(_tiny_request(pool, query, production))
    return outcome.body, outcome.status


async def test_unexpected_errors_are_masked(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, executor_name: str
) -> None:
    payload, status = await _run_tiny(pool, "{ ok boom }", executor_name)
    assert status == 200
    assert payload["data"] == {"ok": 1, "boom": None}
    error = payload["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}
    assert "password_hash" not in orjson.dumps(payload).decode()
    assert any("password_hash" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_api_errors_pass_through(pool: asyncpg.Pool, executor_name: str) -> None:
    payload, _ = await _run_tiny(pool, "{ missing }", executor_name)
    assert payload["errors"][0]["message"] == "Student not found"
    assert payload["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_database_unavailable_is_503(pool: asyncpg.Pool, executor_name: str) -> None:
    payload, status = await _run_tiny(pool, "{ down }", executor_name)
    assert status == 503
    assert payload["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "10.0.0.5" not in orjson.dumps(payload).decode()
    partial, partial_status = await _run_tiny(pool, "{ ok down }", executor_name)
    assert partial_status == 200  # some data made it: not a failed response
    assert partial["data"] == {"ok": 1, "down": None}


async def test_database_down_over_http(database_url: str, teacher: dict[str, str]) -> None:
    name = database_url.rpartition("/")[2]
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/{name}"
    async with app_client(http_settings(dead)) as client:
        response = await client.post("/graphql", json={"query": "{ categories { name } }"}, headers=teacher)
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert (await body(response))["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200


# --- probes -----------------------------------------------------------------------------------------


async def test_healthz_and_readyz(client: Client) -> None:
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await body(health))["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200


class _Proxy:
    """A TCP proxy to PostgreSQL that the test can cut and restore: the database 'goes away'."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_readyz_follows_the_database_and_recovers(database_url: str) -> None:
    base, _, name = database_url.rpartition("/")
    proxy = _Proxy(int(base.rsplit(":", 1)[1]))
    await proxy.start()
    settings = http_settings(f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}")
    async with app_client(settings) as client:
        assert (await client.get("/readyz")).status == 200
        await proxy.stop()
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        await proxy.start()
        assert (await client.get("/readyz")).status == 200
    await proxy.stop()


async def test_readyz_tells_a_busy_pool_from_an_unreachable_database(database_url: str) -> None:
    """Issue 12 item 12: with every pooled connection checked out, /readyz said "unreachable"."""
    async with app_client(http_settings(database_url)) as client:
        pool = client.app[POOL]
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            busy = await client.get("/readyz")
            assert busy.status == 200
            assert await busy.json() == {
                "status": "ready",
                "database": "busy",
                "pool": {"size": len(held), "inUse": len(held), "max": len(held)},
            }
        finally:
            for conn in held:
                await pool.release(conn)
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["database"] == "ok"
    base, _, name = database_url.rpartition("/")
    async with app_client(http_settings(f"{base.rsplit(':', 1)[0]}:{free_port()}/{name}")) as client:
        down = await client.get("/readyz")
        assert down.status == 503
        assert await down.json() == {"status": "unavailable", "database": "unreachable"}


# --- the real server process ------------------------------------------------------------------------


async def _pid_answering(port: int) -> int | None:
    """The pid of the worker that takes a new connection (None if the connection was reset)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            pid: int = (await response.json())["pid"]
            return pid
    except aiohttp.ClientError:
        return None  # a connection queued on a worker that was just killed


@pytest.mark.slow
async def test_workers_share_the_port_and_stop_on_sigterm(database_url: str) -> None:
    port = free_port()
    process = start_server(database_url, port, "--workers", "2")
    try:
        pids = await wait_ready(port, process, workers=2)  # two distinct pids answered
        assert len(pids) == 2
        # A worker that dies is replaced by the supervisor, and the port keeps answering meanwhile.
        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        fresh: set[int | None] = set()
        for _ in range(400):
            fresh.add(await _pid_answering(port))
            if fresh - pids - {victim, None}:
                break
            await asyncio.sleep(0.05)
        assert fresh - pids - {victim, None}, "the dead worker was not replaced"
    finally:
        process.send_signal(signal.SIGTERM)
        code, output = stop_server(process, terminate=False)
    assert code == 0, output


# --- the extension points other parts plug into ------------------------------------------------------


async def test_token_limit_is_the_parser_s(pool: asyncpg.Pool) -> None:
    pipeline = _tiny_pipeline(max_tokens=20)
    outcome = await pipeline.run(_tiny_request(pool, "{ " + "ok " * 50 + "}"))
    assert outcome.status == 400
    assert outcome.body["errors"][0]["extensions"]["code"] == "TOKEN_LIMIT_EXCEEDED"


async def test_document_checks_run_before_validation_and_are_cached(pool: asyncpg.Pool) -> None:
    seen: list[DocumentNode] = []

    def too_deep(document: DocumentNode) -> list[GraphQLError]:
        seen.append(document)
        return [GraphQLError("Too deep", extensions={"code": "QUERY_TOO_DEEP"})]

    pipeline = _tiny_pipeline(checks=[too_deep])
    for _ in range(2):
        outcome = await pipeline.run(_tiny_request(pool, "{ ok }"))
        assert outcome.status == 400
        assert outcome.legacy_status == 200
        assert outcome.body["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
    assert len(seen) == 1


@dataclass(frozen=True)
class _RateLimit:
    name: ClassVar[str] = "rate_limit"
    needs: ClassVar[frozenset[str]] = frozenset({"params"})
    provides: ClassVar[frozenset[str]] = frozenset()

    def run(self, request: OperationRequest) -> None:
        if request.params.extensions and request.params.extensions.get("flood"):
            raise Refusal(
                GraphQLError("Slow down", extensions={"code": "RATE_LIMITED"}),
                status=429,
                headers={"Retry-After": "30"},
            )


@dataclass(frozen=True)
class _Cost:
    name: ClassVar[str] = "cost"
    needs: ClassVar[frozenset[str]] = frozenset({"document", "operation"})
    provides: ClassVar[frozenset[str]] = frozenset({"price"})

    def run(self, request: OperationRequest) -> None:
        assert request.operation is not None and request.document is not None
        request.context.extensions["cost"] = {"requestedQueryCost": 1}


@dataclass(frozen=True)
class _Seen:
    name: ClassVar[str] = "seen"

    def run(self, request: OperationRequest) -> None:
        assert request.result is not None
        request.context.extensions["seen"] = request.result.data


async def test_stages_can_refuse_and_annotate(pool: asyncpg.Pool) -> None:
    pipeline = _tiny_pipeline(before=[_RateLimit()], after=[_Cost()], finishers=[_Seen()])
    refused = await pipeline.run(_tiny_request(pool, "{ ok }", flood=True))
    assert (refused.status, refused.legacy_status, refused.headers) == (429, 429, {"Retry-After": "30"})
    done = await pipeline.run(_tiny_request(pool, "{ ok }"))
    assert done.body["extensions"]["cost"] == {"requestedQueryCost": 1}
    assert done.body["extensions"]["seen"] == {"ok": 1}


def test_a_stage_that_needs_what_no_earlier_stage_provides_is_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match="stage 'cost' needs"):
        _tiny_pipeline(before=[_Cost()])


async def test_a_failing_stage_is_masked(pool: asyncpg.Pool) -> None:
    def broken(_request: OperationRequest) -> None:
        raise KeyError("redis://secret-host")

    pipeline = _tiny_pipeline(after=[Watch(broken)])
    outcome = await pipeline.run(_tiny_request(pool, "{ ok }"))
    assert outcome.status == 500
    assert "secret-host" not in orjson.dumps(outcome.body).decode()
    assert outcome.body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_graceful_shutdown_finishes_in_flight_requests(database_url: str) -> None:
    entered = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        entered.set()
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    settings = http_settings(database_url, shutdown_timeout=5.0)
    app = create_app(settings)
    app.router.add_get("/slow", slow)
    port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_app(app, settings, "127.0.0.1", port, stop, tune_gc=False))
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
        await entered.wait()
        stop.set()  # what SIGTERM does
        response = await in_flight
        assert response.status == 200
        assert await response.text() == "finished"
        assert await serving == 0
        assert app[POOL].is_closing()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/healthz")
