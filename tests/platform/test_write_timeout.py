"""Writes have their own statement timeout (MLC_DB_WRITE_STATEMENT_TIMEOUT_MS), not the read one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from mlc_graph.platform.config import PoolSettings
from resolvers.relay import encode_global_id
from tests.support import database, factories
from tests.support.http import app_client, bearer, http_settings

SUBMIT = """mutation($input: SubmitScoreInput!) { submitScore(input: $input) { score { score } } }"""


@pytest.fixture
async def own_database() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of its own: these tests hold row locks for seconds and time statements out, which
    must neither wait behind nor hold up the shared test database (whose pool has the 5 s read timeout)."""
    async with database.own_database("mlc_wt") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            yield url, pool
        finally:
            await pool.close()


async def _student_and_game(pool: asyncpg.Pool) -> tuple[int, int, int]:
    org = await factories.make_org(pool)
    teacher = await factories.make_teacher(pool, org)
    (student,) = await factories.make_students(pool, org, teacher, 1)
    _, _, (game,) = await factories.make_catalogue(pool, games=1)
    return org, student, game


def _submission(game: int, key: str) -> dict[str, Any]:
    return {
        "query": SUBMIT,
        "variables": {
            "input": {
                "gameId": encode_global_id("Game", game),
                "score": 500,
                "stage": "CHALLENGE",
                "idempotencyKey": key,
            }
        },
    }


async def _wait_until_blocked(watcher: asyncpg.Connection, request: asyncio.Task[Any]) -> bool:
    """True once a server backend waits on the test's row lock; False if the request ended first."""
    for _ in range(2000):
        if request.done():
            return False
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mlc-graph' "
            "AND wait_event_type = 'Lock' AND datname = current_database()"
        )
        if waiting:
            return True
        await asyncio.sleep(0.01)
    raise AssertionError("the submission never reached the lock")


async def test_a_write_blocked_longer_than_the_read_timeout_still_commits(
    own_database: tuple[str, asyncpg.Pool],
) -> None:
    database_url, pool = own_database
    org, student, game = await _student_and_game(pool)
    limits = PoolSettings(
        min_size=1, max_size=4, read_statement_timeout_ms=200, write_statement_timeout_ms=60_000
    )
    lock = await asyncpg.connect(database_url)
    try:
        async with app_client(http_settings(database_url, pool=limits)) as client:
            async with lock.transaction():
                await lock.execute("SELECT 1 FROM students WHERE id = $1 FOR UPDATE", student)
                request = asyncio.ensure_future(
                    client.post(
                        "/graphql", json=_submission(game, "k-1"), headers=bearer("student", student, org)
                    )
                )
                blocked = await _wait_until_blocked(lock, request)
                if blocked:
                    # Hold the lock for three read timeouts: a read-timeout write would be cancelled by now.
                    await asyncio.sleep(0.6)
            response = await asyncio.wait_for(request, 30)
            body = await response.json()
    finally:
        await lock.close()
    assert body.get("errors") is None, body
    assert body["data"]["submitScore"]["score"] == {"score": 500}
    assert blocked
    assert await pool.fetchval("SELECT count(*) FROM scores WHERE student_id = $1", student) == 1


async def test_a_write_blocked_past_the_write_timeout_is_refused_and_leaves_nothing(
    own_database: tuple[str, asyncpg.Pool],
) -> None:
    database_url, pool = own_database
    org, student, game = await _student_and_game(pool)
    # Reads may wait a minute, writes 300 ms: answering at all while the lock is held shows SET LOCAL applied.
    limits = PoolSettings(
        min_size=1, max_size=4, read_statement_timeout_ms=60_000, write_statement_timeout_ms=300
    )
    lock = await asyncpg.connect(database_url)
    try:
        async with app_client(http_settings(database_url, pool=limits)) as client, lock.transaction():
            await lock.execute("SELECT 1 FROM students WHERE id = $1 FOR UPDATE", student)
            response = await asyncio.wait_for(
                client.post(
                    "/graphql", json=_submission(game, "k-2"), headers=bearer("student", student, org)
                ),
                20,
            )
            body = await response.json()
    finally:
        await lock.close()
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
    assert await pool.fetchval("SELECT count(*) FROM scores WHERE student_id = $1", student) == 0
    assert await pool.fetchval("SELECT count(*) FROM score_submissions WHERE student_id = $1", student) == 0
