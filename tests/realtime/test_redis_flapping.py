"""A Redis that goes away and comes back while requests flow: every request is answered as during an
outage (in process), never with a 5xx, whatever redis-py raises on a connection torn down under it."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import asyncpg
import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from mlc_graph.platform.redis import RedisState, RedisUnavailable, fallback_count
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.http import http_settings, token
from tests.support.redis_server import RedisServer

redis_server = redis_support.redis_server

SUBMIT = "mutation($input: SubmitScoreInput!) { submitScore(input: $input) { clientMutationId } }"
BOARD = (
    "query($game: ID!) { leaderboard(gameId: $game, scope: ORGANIZATION, first: 5) { entries { score } } }"
)
RESTARTS = 8
CLIENTS = 30


async def test_a_client_failure_that_is_not_a_redis_error_reads_as_an_outage(
    redis_server: RedisServer,
) -> None:
    """redis-py can fail with exceptions outside RedisError and OSError (an AttributeError on a connection
    torn down under a request, a UnicodeDecodeError on a reply it cannot decode): each must fall back
    like an outage, never reach the request as an internal error."""
    raw = redis_sync.Redis(port=redis_server.port)
    raw.set("not-utf8", b"\xff\xfe")
    raw.close()
    state = RedisState(redis_server.url, probe_seconds=0.0)
    try:
        before = fallback_count()
        with pytest.raises(RedisUnavailable) as failure:
            await state.run("read", lambda r: r.get("not-utf8"))
        assert isinstance(failure.value.__cause__, UnicodeDecodeError)
        assert fallback_count() == before + 1
        assert await state.run("write", lambda r: r.set("fine", "1")) is True  # and it recovers
    finally:
        await state.close()


async def test_no_5xx_while_redis_restarts_under_load(
    clean_db: asyncpg.Pool, database_url: str, redis_server: RedisServer
) -> None:
    """Twelve students submit scores and read their board while Redis is killed and restarted six times
    (down 0.3 s, up 1.2 s: past the 1 s probe, so requests hit the fresh server while others still hold
    connections to the dead one). Every answer is a 200 without errors."""
    org = await factories.make_org(clean_db, "Flap")
    teacher = await factories.make_teacher(clean_db, org)
    students = await factories.make_students(clean_db, org, teacher, CLIENTS)
    _, _, games = await factories.make_catalogue(clean_db, games=1)
    game = encode_global_id("Game", games[0])
    settings = http_settings(database_url, redis_url=redis_server.url)
    statuses: Counter[int] = Counter()
    failures: list[Any] = []
    done = asyncio.Event()
    serial = itertools.count()

    async def student(client: TestClient[Any, Any], student_id: int) -> None:
        headers = {"Authorization": f"Bearer {token('student', student_id, org)}"}
        while not done.is_set():
            n = next(serial)
            if n % 2:
                body = {"query": BOARD, "variables": {"game": game}}
            else:
                score = {
                    "gameId": game,
                    "score": n % 1000,
                    "stage": "CHALLENGE",
                    "idempotencyKey": f"flap-{n}",
                }
                body = {"query": SUBMIT, "variables": {"input": score}}
            response = await client.post("/graphql", json=body, headers=headers)
            payload = await response.json()
            statuses[response.status] += 1
            if response.status != 200 or payload.get("errors"):
                failures.append((response.status, payload))

    async with TestClient(TestServer(create_app(settings))) as client:
        workers = [asyncio.create_task(student(client, s)) for s in students]
        try:
            await asyncio.sleep(0.5)
            for _ in range(RESTARTS):
                await asyncio.to_thread(redis_server.stop)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(redis_server.start)
                await asyncio.sleep(1.2)
        finally:
            done.set()
            await asyncio.gather(*workers)
    assert failures == []
    assert set(statuses) == {200}
    assert statuses[200] > CLIENTS * RESTARTS  # requests really flowed through every restart
