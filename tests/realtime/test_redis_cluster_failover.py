"""A Redis Cluster primary killed under load, with two `mlc-graph serve` instances on the cluster.

Six local nodes (three primaries, three replicas, cluster-node-timeout 1 s). Six students submit scores
through both instances for a bounded time; after two seconds the primary that holds their
organization's quota keys is killed. What docs/REALTIME.md ("Redis Cluster failover") promises is what
is checked: no request fails while the replica takes over, every acknowledged score is in PostgreSQL
and, once the cluster is healthy again, quotas are shared again, the boards in Redis equal PostgreSQL's
order and a score on one instance reaches a subscriber on the other, all without restarting anything.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import asyncpg
import orjson
import pytest
from redis.asyncio import RedisCluster

from loaders.leaderboards import BoardKey
from mlc_graph.guards.sessions import org_tag
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from mlc_graph.platform.redis import RedisState
from mlc_graph.realtime.live_boards import LiveLeaderboards, decode_entry
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support.http import free_port, start_server, stop_server, wait_ready
from tests.support.redis_cluster import RedisClusterNodes, redis_cluster

pytestmark = pytest.mark.slow

STUDENTS = 6
BEFORE_KILL_SECONDS = 2.0
AFTER_KILL_SECONDS = 6.0
RECOVERY_SECONDS = 30.0
SUBMIT = "mutation($i: SubmitScoreInput!) { submitScore(input: $i) { score { score } } }"
BOARD = "query($g: ID!) { leaderboard(gameId: $g, scope: ORGANIZATION, first: 10) { entries { score } } }"
SUBSCRIBE = (
    "subscription($g: ID!) { leaderboardUpdated(gameId: $g, scope: ORGANIZATION) { entries { score } } }"
)
RATE = "{ viewer { rateLimit { shared used } } }"


@pytest.fixture
def nodes() -> Iterator[RedisClusterNodes]:
    with redis_cluster() as running:
        yield running


@dataclass(frozen=True)
class Fleet:
    urls: list[str]
    prefix: str


@pytest.fixture
async def fleet(database_url: str, nodes: RedisClusterNodes) -> AsyncIterator[Fleet]:
    prefix = f"mlctest:{uuid.uuid4().hex[:8]}:"
    env = {
        "REDIS_URL": nodes.url,
        "MLC_REDIS_PREFIX": prefix,
        "MLC_LEADERBOARD_COALESCE_MS": "50",
        "MLC_REQUEST_LOG": "off",
    }
    ports = [free_port(), free_port()]
    processes = [start_server(database_url, port, **env) for port in ports]
    try:
        await asyncio.gather(*(wait_ready(p, proc) for p, proc in zip(ports, processes, strict=True)))
        yield Fleet([f"http://127.0.0.1:{p}" for p in ports], prefix)
    finally:
        for process in processes:
            stop_server(process)


def _token(role: Role, user: int, org: int) -> str:
    return issue_token(DEV_JWT_SECRET, role, user, org, session_id=f"{role.value}-{user}")


async def _post(http: aiohttp.ClientSession, base: str, token: str, query: str, variables: Any = None) -> Any:
    async with http.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.json()


async def test_a_primary_killed_under_load(
    clean_db: asyncpg.Pool, nodes: RedisClusterNodes, fleet: Fleet
) -> None:
    instances = fleet.urls
    org = await factories.make_org(clean_db, "Failover")
    teacher = await factories.make_teacher(clean_db, org)
    students = await factories.make_students(clean_db, org, teacher, STUDENTS)
    _, _, [game] = await factories.make_catalogue(clean_db, games=1)
    game_id = encode_global_id("Game", game)
    tokens = {s: _token(Role.STUDENT, s, org) for s in students}
    answers: list[tuple[int, Any]] = []
    acknowledged: list[tuple[int, str]] = []
    serial = itertools.count(1)
    victim = nodes.node_for(f"x{org_tag(org)}")  # the primary holding the organization's quota keys

    async with aiohttp.ClientSession() as http:

        async def student(s: int, until: float) -> None:
            while time.monotonic() < until:
                n = next(serial)
                key = uuid.uuid4().hex
                variables = {
                    "i": {"gameId": game_id, "score": n % 1000, "stage": "CHALLENGE", "idempotencyKey": key}
                }
                status, body = await _post(http, instances[n % 2], tokens[s], SUBMIT, variables)
                answers.append((status, body.get("errors")))
                if status == 200 and not body.get("errors"):
                    acknowledged.append((s, key))
                status, body = await _post(http, instances[(n + 1) % 2], tokens[s], BOARD, {"g": game_id})
                answers.append((status, body.get("errors")))
                await asyncio.sleep(0.05)

        until = time.monotonic() + BEFORE_KILL_SECONDS + AFTER_KILL_SECONDS
        load = [asyncio.create_task(student(s, until)) for s in students]
        await asyncio.sleep(BEFORE_KILL_SECONDS)
        victim.kill()
        await asyncio.gather(*load)
        await asyncio.to_thread(nodes.wait_healthy)
        assert nodes.node_for(f"x{org_tag(org)}") is not victim  # a replica took over

        # 1. No request failed during the failover, and every acknowledged score is durable.
        assert [a for a in answers if a != (200, None)] == []
        assert len(acknowledged) > STUDENTS * 4
        stored = await clean_db.fetch(
            "SELECT student_id, idempotency_key FROM score_submissions WHERE student_id = ANY($1::bigint[])",
            students,
        )
        assert {(r["student_id"], r["idempotency_key"]) for r in stored} == set(acknowledged)

        # 2. Quotas are shared again on both instances, without a restart: one counter across both.
        teacher_token = _token(Role.TEACHER, teacher, org)
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:
            seen = [await _post(http, base, teacher_token, RATE) for base in instances]
            rates = [body["data"]["viewer"]["rateLimit"] for _, body in seen]
            if all(r["shared"] for r in rates) and rates[1]["used"] == rates[0]["used"] + 1:
                break
            assert time.monotonic() < deadline, rates
            await asyncio.sleep(0.5)

        # 3. The board in Redis equals PostgreSQL's order (rebuilt after the outage), read via both.
        expected = [
            (r["student_id"], r["score"])
            for r in await clean_db.fetch(
                "SELECT student_id, score FROM best_scores WHERE game_id = $1 AND org_id = $2 "
                "ORDER BY score DESC, achieved_at, student_id",
                game,
                org,
            )
        ]
        for base in instances:
            status, body = await _post(http, base, tokens[students[0]], BOARD, {"g": game_id})
            assert [e["score"] for e in body["data"]["leaderboard"]["entries"]] == [s for _, s in expected]
        state = RedisState(nodes.url, prefix=fleet.prefix)
        assert await _redis_board(state, BoardKey(game, "ORGANIZATION", org)) == expected

        # 4. Fan-out works again: a score through instance A reaches a subscriber on instance B.
        ws_url = instances[1].replace("http", "ws") + "/graphql"
        async with http.ws_connect(ws_url, protocols=("graphql-transport-ws",)) as ws:
            init = {"type": "connection_init", "payload": {"token": tokens[students[1]]}}
            await ws.send_str(orjson.dumps(init).decode())
            assert orjson.loads((await ws.receive(timeout=10)).data) == {"type": "connection_ack"}
            subscribe = {
                "type": "subscribe",
                "id": "1",
                "payload": {"query": SUBSCRIBE, "variables": {"g": game_id}},
            }
            await ws.send_str(orjson.dumps(subscribe).decode())
            await ws.receive(timeout=10)  # the board as it is
            top = {
                "i": {
                    "gameId": game_id,
                    "score": 1000,
                    "stage": "CHALLENGE",
                    "idempotencyKey": "after-failover",
                }
            }
            status, body = await _post(http, instances[0], tokens[students[2]], SUBMIT, top)
            assert (status, body.get("errors")) == (200, None)
            # Notices of the load's last scores may still be on their way: wait for the one with 1000 on top.
            tops: list[int] = []
            deadline = time.monotonic() + 10
            while not tops or tops[-1] != 1000:
                assert time.monotonic() < deadline, tops
                update = orjson.loads((await ws.receive(timeout=10)).data)
                tops.append(update["payload"]["data"]["leaderboardUpdated"]["entries"][0]["score"])
        await state.close()


async def _redis_board(state: RedisState, board: BoardKey) -> list[tuple[int, int]]:
    client = state.client
    assert isinstance(client, RedisCluster)
    name = LiveLeaderboards(state).keys(board)[0]
    # withscores=True: (member, score) pairs; redis-py's annotation covers every form of ZRANGE's reply.
    members = cast(list[tuple[str, float]], await client.zrange(name, 0, -1, withscores=True))
    entries = [decode_entry(str(m), float(neg), rank) for rank, (m, neg) in enumerate(members, start=1)]
    return [(e.student_id, e.score) for e in entries]
