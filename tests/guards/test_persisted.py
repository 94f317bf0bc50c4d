"""Persisted operations: APQ registration and lookup, trusted documents, the stores and `persist`."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from mlc_graph.app import create_app
from mlc_graph.guards.persisted import (
    LayeredStore,
    MemoryStore,
    PersistedQueries,
    RedisStore,
    TableStore,
    build,
    document_hash,
    documents_of,
    persist_files,
    warm,
)
from mlc_graph.platform.config import Settings
from mlc_graph.platform.errors import Refusal
from tests.support.database import REDIS_URL
from tests.support.http import bearer, http_settings

QUERY = "query Me { viewer { role } }"
SHA = document_hash(QUERY)


def apq(sha256: str = SHA, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha256}}


def code(refused: pytest.ExceptionInfo[Refusal]) -> str:
    extensions = refused.value.errors[0].extensions or {}
    return str(extensions["code"])


@pytest.fixture
async def documents_table(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("TRUNCATE persisted_documents")
    return pool


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def test_hash_is_hex_sha256_of_utf8() -> None:
    assert document_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert document_hash("{ é }") == hashlib.sha256("{ é }".encode()).hexdigest()


async def test_apq_round_trip_in_memory() -> None:
    stage = PersistedQueries(LayeredStore([memory := MemoryStore()]), memory)
    with pytest.raises(Refusal) as refused:
        await stage.resolve(None, apq())
    assert code(refused) == "PERSISTED_QUERY_NOT_FOUND"
    assert refused.value.errors[0].message == "PersistedQueryNotFound"  # what Apollo clients match on
    assert await stage.resolve(QUERY, apq()) == QUERY
    await stage.remember(QUERY, apq())  # after it ran
    assert await stage.resolve(None, apq()) == QUERY
    assert await stage.resolve(QUERY, None) == QUERY  # plain queries still run outside trusted mode


@pytest.mark.parametrize(
    ("query", "extensions", "expected"),
    [
        ("{ a }", apq(), "PERSISTED_QUERY_HASH_MISMATCH"),
        (None, apq(version=2), "PERSISTED_QUERY_NOT_SUPPORTED"),
        (None, apq("not-a-hash"), "PERSISTED_QUERY_NOT_SUPPORTED"),
        (None, {"persistedQuery": "x"}, "PERSISTED_QUERY_NOT_SUPPORTED"),
        (None, apq(SHA.upper()), "PERSISTED_QUERY_NOT_SUPPORTED"),
    ],
)
async def test_malformed_persisted_queries(
    query: str | None, extensions: dict[str, Any], expected: str
) -> None:
    stage = PersistedQueries(LayeredStore([memory := MemoryStore()]), memory)
    with pytest.raises(Refusal) as refused:
        await stage.resolve(query, extensions)
    assert code(refused) == expected


async def test_memory_store_is_bounded_in_entries_and_characters() -> None:
    store = MemoryStore(max_entries=2)
    for text in ("a", "b", "c"):
        await store.put(document_hash(text), text)
    assert len(store) == 2
    assert await store.get(document_hash("a")) is None
    assert await store.get(document_hash("c")) == "c"
    small = MemoryStore(max_chars=10)
    for text in ("x" * 4, "y" * 4, "z" * 4):
        await small.put(document_hash(text), text)
    assert len(small) == 2
    assert await small.get(document_hash("x" * 4)) is None


async def test_redis_store_is_shared_between_instances(redis: Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    first = PersistedQueries(LayeredStore([m1 := MemoryStore(), RedisStore(redis, prefix)]), m1)
    second = PersistedQueries(LayeredStore([m2 := MemoryStore(), RedisStore(redis, prefix)]), m2)
    await first.remember(QUERY, apq())
    assert await second.resolve(None, apq()) == QUERY
    assert m2.peek(SHA) == QUERY  # copied into the process cache on the way up
    assert await redis.ttl(prefix + SHA) > 0  # APQ entries expire
    await redis.delete(prefix + SHA)


async def test_trusted_mode_runs_only_registered_documents(documents_table: asyncpg.Pool) -> None:
    settings = replace(Settings(), trusted_documents_only=True)
    stage = build(settings, documents_table, None)
    for query, extensions in ((QUERY, None), (None, apq()), (QUERY, apq())):
        with pytest.raises(Refusal) as refused:
            await stage.resolve(query, extensions)
        assert code(refused) == "PERSISTED_QUERY_NOT_ALLOWED"
    await TableStore(documents_table).put(SHA, QUERY, "Me")
    fresh = build(settings, documents_table, None)  # a new instance: misses are remembered briefly
    assert await fresh.resolve(None, apq()) == QUERY
    assert await fresh.resolve(QUERY, None) == QUERY
    assert await fresh.resolve(QUERY, apq()) == QUERY


async def test_warm_loads_registered_documents(documents_table: asyncpg.Pool) -> None:
    await TableStore(documents_table).put(SHA, QUERY, "Me")
    stage = build(Settings(), None, None)
    assert await warm(stage, documents_table) == 1
    assert await stage.resolve(None, apq()) == QUERY


def test_documents_of_a_file_with_several_operations() -> None:
    text = """
    query A { viewer { ...Who } }
    query B { categories { id } }
    fragment Who on Viewer { role }
    """
    found = documents_of(text)
    assert found[0] == ("A, B", text)
    assert [name for name, _ in found[1:]] == ["A", "B"]
    assert "fragment Who on Viewer" in found[1][1]
    assert "fragment" not in found[2][1]
    assert documents_of(QUERY) == [("Me", QUERY)]


async def test_persist_registers_files_in_the_table(
    documents_table: asyncpg.Pool, database_url: str, redis: Redis
) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    settings = replace(Settings(), database_url=database_url, redis_url=REDIS_URL, redis_prefix=prefix)
    registered = await persist_files(settings, [("me.graphql", QUERY)])
    assert registered == [(SHA, "Me", "me.graphql")]
    assert await TableStore(documents_table).get(SHA) == QUERY
    assert (await redis.get(prefix + "trusted:" + SHA)) == QUERY.encode()
    assert await persist_files(settings, [("me.graphql", QUERY)]) == registered  # idempotent
    await redis.delete(prefix + "trusted:" + SHA)


# --- over HTTP ---------------------------------------------------------------------------------------

VIEWER = "{ viewer { role } }"
VIEWER_SHA = document_hash(VIEWER)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def get(client: TestClient[Any, Any], sha256: str) -> tuple[int, Any]:
    params = {"extensions": orjson.dumps(apq(sha256)).decode()}
    response = await client.get("/graphql", params=params, headers=bearer("teacher", 1, 1))
    return response.status, orjson.loads(await response.read())


async def test_apq_over_get_and_post(database_url: str, documents_table: asyncpg.Pool) -> None:
    async with serving(http_settings(database_url)) as client:
        status, payload = await get(client, VIEWER_SHA)
        assert (status, payload["errors"][0]["extensions"]["code"]) == (200, "PERSISTED_QUERY_NOT_FOUND")
        response = await client.post(
            "/graphql", json={"query": VIEWER, "extensions": apq(VIEWER_SHA)}, headers=bearer("teacher", 1, 1)
        )
        assert response.status == 200
        status, payload = await get(client, VIEWER_SHA)  # a CDN can cache this URL
        assert (status, payload["data"]) == (200, {"viewer": {"role": "TEACHER"}})
        assert payload["extensions"]["cost"]["requestedQueryCost"] == 1
        # A document that does not run (invalid here) is never registered, even with a matching hash.
        junk = "{ nope }"
        response = await client.post(
            "/graphql",
            json={"query": junk, "extensions": apq(document_hash(junk))},
            headers=bearer("teacher", 1, 1),
        )
        assert (
            orjson.loads(await response.read())["errors"][0]["extensions"]["code"]
            == "GRAPHQL_VALIDATION_FAILED"
        )
        status, payload = await get(client, document_hash(junk))
        assert payload["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_trusted_documents_over_http(database_url: str, documents_table: asyncpg.Pool) -> None:
    await TableStore(documents_table).put(VIEWER_SHA, VIEWER, None)
    settings = http_settings(database_url, trusted_documents_only=True)
    async with serving(settings) as client:
        status, payload = await get(client, VIEWER_SHA)
        assert (status, payload["data"]) == (200, {"viewer": {"role": "TEACHER"}})
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { role teacher { id } } }"},
            headers={**bearer("teacher", 1, 1), "Accept": "application/graphql-response+json"},
        )
        payload = orjson.loads(await response.read())
        assert (response.status, payload["errors"][0]["extensions"]["code"]) == (
            400,
            "PERSISTED_QUERY_NOT_ALLOWED",
        )


async def test_persist_command_prints_hashes(
    documents_table: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "ops.graphql"
    source.write_text(QUERY, encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": ""}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mlc_graph.cli", "persist", str(source), env=env, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert output.decode().split() == [SHA, "Me", str(source)]
    assert await TableStore(documents_table).get(SHA) == QUERY
