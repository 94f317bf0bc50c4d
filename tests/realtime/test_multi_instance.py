"""Two `mlc-graph serve` processes sharing one PostgreSQL database and one Redis: limits and live updates
hold across instances, as they must behind a load balancer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

import aiohttp
import asyncpg
import orjson
import pytest

from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.http import ROOT, free_port, wait_ready

pytestmark = pytest.mark.slow

# SOLO is made tiny for these tests; PRELUDE keeps the product's 500 requests per hour.
OVERRIDES = '{"SOLO": {"requests_per_hour": 6, "sessions": 3}}'
SUBMIT = """
mutation Submit($input: SubmitScoreInput!) {
  submitScore(input: $input) { clientMutationId }
}
"""
BOARD = """
subscription Board($game: ID!) {
  leaderboardUpdated(gameId: $game, scope: ORGANIZATION) { entries { rank score displayName } }
}
"""


@dataclass
class Instance:
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"


def _start(database_url: str, prefix: str) -> Instance:
    port = free_port()
    # Output to a file, not a pipe: hundreds of access-log lines would fill a pipe and stall the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _stop when the server stops
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MLC_ENV": "development",
        "REDIS_URL": REDIS_URL,
        "MLC_REDIS_PREFIX": prefix,
        "MLC_TIER_OVERRIDES": OVERRIDES,
        "MLC_LEADERBOARD_COALESCE_MS": "50",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mlc_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Instance(port, process, log)


def _stop(instance: Instance) -> None:
    instance.process.terminate()
    try:
        instance.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        instance.process.kill()
        instance.process.wait()
    instance.log.close()


def _problems(instance: Instance) -> list[str]:
    """The server's warning and error log lines, for a failure message."""
    instance.log.seek(0)
    lines = instance.log.read().decode(errors="replace").splitlines()
    instance.log.seek(0, os.SEEK_END)
    return [line for line in lines if '"level":"warning"' in line or '"level":"error"' in line][-5:]


@pytest.fixture(scope="module")
def module_prefix() -> Iterator[str]:
    prefix = f"mlctest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    redis_support.delete_prefix(REDIS_URL, prefix)


@pytest.fixture(scope="module")
async def cluster(database_url: str, module_prefix: str) -> AsyncIterator[tuple[Instance, Instance]]:
    a, b = _start(database_url, module_prefix), _start(database_url, module_prefix)
    try:
        await asyncio.gather(wait_ready(a.port, a.process), wait_ready(b.port, b.process))
        yield a, b
    finally:
        _stop(a)
        _stop(b)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def fresh(pool: asyncpg.Pool) -> asyncpg.Pool:
    """New rows per test, never emptied: the servers cache each organization's tier for a minute, so an
    id restarted by TRUNCATE could name another tier than they remember."""
    return pool


async def _post(
    http: aiohttp.ClientSession, instance: Instance, token: str, query: str, variables: Any = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(
        instance.url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.json(), dict(response.headers)


def _token(role: Role, user: int, org: int, sid: str | None = None) -> str:
    return issue_token(DEV_JWT_SECRET, role, user, org, session_id=sid or uuid.uuid4().hex)


async def test_request_limit_holds_across_instances(
    cluster: tuple[Instance, Instance], fresh: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    org = await factories.make_org(fresh, tier="SOLO")
    teacher = await factories.make_teacher(fresh, org)
    me = _token(Role.TEACHER, teacher, org)
    statuses = []
    for i in range(8):
        status, body, headers = await _post(http, cluster[i % 2], me, "{ viewer { role } }")
        statuses.append((status, headers.get("RateLimit-Remaining")))
    assert statuses == [
        (200, "5"), (200, "4"), (200, "3"), (200, "2"), (200, "1"), (200, "0"), (429, "0"), (429, "0")
    ]  # fmt: skip
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) > 0


async def test_the_501st_prelude_request_fails_wherever_it_lands(
    cluster: tuple[Instance, Instance], fresh: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    org = await factories.make_org(fresh, tier="PRELUDE")
    teacher = await factories.make_teacher(fresh, org)
    me = _token(Role.TEACHER, teacher, org)
    query = "{ viewer { role } }"
    statuses: list[int] = []
    refused: list[Any] = []
    for start in range(0, 500, 25):  # bounded concurrency: 25 in flight, alternating instances
        batch = [_post(http, cluster[i % 2], me, query) for i in range(start, start + 25)]
        for status, body, _ in await asyncio.gather(*batch):
            statuses.append(status)
            if status != 200:
                refused.append((status, body))
    assert statuses.count(200) == 500, (refused[:3], [_problems(i) for i in cluster])
    for instance in cluster:
        status, body, _ = await _post(http, instance, me, query)
        assert status == 429
        assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_sessions_count_across_instances(
    cluster: tuple[Instance, Instance], fresh: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    org = await factories.make_org(fresh, tier="SOLO")
    teachers = [await factories.make_teacher(fresh, org) for _ in range(4)]
    tokens = [_token(Role.TEACHER, t, org, sid=f"session-{i}") for i, t in enumerate(teachers)]
    a, b = cluster
    for instance, token in zip((a, b, a), tokens, strict=False):
        assert (await _post(http, instance, token, "{ viewer { role } }"))[0] == 200
    status, body, _ = await _post(http, b, tokens[3], "{ viewer { role } }")
    assert status == 429
    assert body["errors"][0]["extensions"] == {"code": "SESSION_LIMIT", "limit": 3, "active": 3}
    status, body, _ = await _post(http, a, tokens[0], "mutation { endSession { ended activeSessions } }")
    assert body["data"] == {"endSession": {"ended": True, "activeSessions": 2}}
    assert (await _post(http, b, tokens[3], "{ viewer { role } }"))[0] == 200


async def test_a_score_submitted_on_one_instance_reaches_a_subscriber_on_the_other(
    cluster: tuple[Instance, Instance], fresh: asyncpg.Pool, http: aiohttp.ClientSession
) -> None:
    a, b = cluster
    org = await factories.make_org(fresh, tier="ENSEMBLE")
    teacher = await factories.make_teacher(fresh, org)
    [player, watcher] = await factories.make_students(fresh, org, teacher, 2)
    _, _, [game] = await factories.make_catalogue(fresh, games=1)
    game_id = encode_global_id("Game", game)
    async with http.ws_connect(f"ws://127.0.0.1:{b.port}/graphql", protocols=("graphql-transport-ws",)) as ws:
        await ws.send_str(
            orjson.dumps(
                {"type": "connection_init", "payload": {"token": _token(Role.STUDENT, watcher, org)}}
            ).decode()
        )
        assert orjson.loads((await ws.receive(timeout=10)).data) == {"type": "connection_ack"}
        await ws.send_str(
            orjson.dumps(
                {"type": "subscribe", "id": "1", "payload": {"query": BOARD, "variables": {"game": game_id}}}
            ).decode()
        )
        first = orjson.loads((await ws.receive(timeout=10)).data)
        assert first["payload"]["data"]["leaderboardUpdated"]["entries"] == []
        submitted = time.perf_counter()
        status, body, _ = await _post(
            http,
            a,
            _token(Role.STUDENT, player, org),
            SUBMIT,
            {
                "input": {
                    "gameId": game_id,
                    "score": 870,
                    "stage": "CHALLENGE",
                    "idempotencyKey": uuid.uuid4().hex,
                }
            },
        )
        assert status == 200, body
        assert "errors" not in body, body
        update = orjson.loads((await ws.receive(timeout=10)).data)
        delay_ms = (time.perf_counter() - submitted) * 1000
    [entry] = update["payload"]["data"]["leaderboardUpdated"]["entries"]
    assert (entry["rank"], entry["score"]) == (1, 870)
    print(f"fan-out: submit on instance A -> event on instance B in {delay_ms:.1f} ms")
