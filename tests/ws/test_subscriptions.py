"""Subscriptions over graphql-transport-ws: a real client library, the protocol's close codes, privacy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from mlc_graph.app import create_app
from mlc_graph.keys import EVENTS
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from mlc_graph.platform.events import ScoreCommitted
from mlc_graph.ws import subscriptions
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.http import http_settings, token

BOARD = """
subscription Board($game: ID!, $scope: LeaderboardScope!) {
  leaderboardUpdated(gameId: $game, scope: $scope) {
    scope
    entries { rank score displayName student { id } }
    viewerEntry { rank score }
  }
}
"""
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
redis_prefix = redis_support.redis_prefix


@dataclass
class School:
    game: int
    org_a: int
    org_b: int
    teacher_a: int
    teacher_b: int
    students_a: list[int]
    students_b: list[int]

    @property
    def game_id(self) -> str:
        return encode_global_id("Game", self.game)


@pytest.fixture
async def school(clean_db: asyncpg.Pool, module_prefix: str) -> School:
    """Fresh rows (ids restart) and so fresh Redis boards and quotas too."""
    redis_support.delete_prefix(REDIS_URL, module_prefix)
    org_a = await factories.make_org(clean_db, "A", tier="ENSEMBLE")
    org_b = await factories.make_org(clean_db, "B", tier="ENSEMBLE")
    teacher_a = await factories.make_teacher(clean_db, org_a)
    teacher_b = await factories.make_teacher(clean_db, org_b)
    students_a = await factories.make_students(clean_db, org_a, teacher_a, 3)
    students_b = await factories.make_students(clean_db, org_b, teacher_b, 2)
    _, _, games = await factories.make_catalogue(clean_db, games=1)
    return School(games[0], org_a, org_b, teacher_a, teacher_b, students_a, students_b)


@pytest.fixture(scope="module")
def module_prefix() -> Iterator[str]:
    prefix = f"mlctest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    redis_support.delete_prefix(REDIS_URL, prefix)


@pytest.fixture(scope="module")
async def server(database_url: str, module_prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    """One server for the module (per-test data is emptied by `clean_db`; boards are keyed by game id)."""
    settings = http_settings(
        database_url,
        redis_url=REDIS_URL,
        redis_prefix=module_prefix,
        max_subscriptions_per_connection=2,
        leaderboard_coalesce_ms=200,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def commit_score(
    server: TestClient[Any, Any],
    pool: asyncpg.Pool,
    school: School,
    student: int,
    score: int,
    at: datetime = T0,
) -> None:
    """What submitScore does after its commit: the database row, then the event."""
    org, teacher = (
        (school.org_a, school.teacher_a) if student in school.students_a else (school.org_b, school.teacher_b)
    )
    await factories.make_score(pool, org, student, school.game, score, at=at)
    best = await pool.fetchrow(
        "SELECT score, achieved_at FROM best_scores WHERE game_id = $1 AND student_id = $2",
        school.game,
        student,
    )
    assert best is not None
    await server.app[EVENTS].score_committed(
        ScoreCommitted(
            0, school.game, student, org, teacher, score, "challenge", best["score"], best["achieved_at"]
        )
    )


def ws_url(server: TestClient[Any, Any]) -> str:
    return str(server.make_url("/graphql")).replace("http://", "ws://")


async def test_gql_client_gets_the_board_then_each_update(
    server: TestClient[Any, Any], school: School, clean_db: asyncpg.Pool
) -> None:
    me = school.students_a[0]
    transport = WebsocketsTransport(
        url=ws_url(server), init_payload={"authorization": f"Bearer {token('student', me, school.org_a)}"}
    )
    seen: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        request = GraphQLRequest(BOARD, variable_values={"game": school.game_id, "scope": "CLASS"})
        # aclosing: leaving the loop early must also end the subscription (gql then sends `complete`).
        async with aclosing(session.subscribe(request)) as updates:
            async for result in updates:
                seen.append(result["leaderboardUpdated"])
                if len(seen) == 1:
                    await commit_score(server, clean_db, school, me, 700)
                elif len(seen) == 2:
                    await commit_score(server, clean_db, school, school.students_a[1], 800)
                else:
                    break
    assert seen[0]["entries"] == []
    assert seen[0]["viewerEntry"] is None
    assert [(e["rank"], e["score"]) for e in seen[1]["entries"]] == [(1, 700)]
    assert seen[1]["viewerEntry"] == {"rank": 1, "score": 700}
    assert [e["score"] for e in seen[2]["entries"]] == [800, 700]
    assert seen[2]["viewerEntry"] == {"rank": 2, "score": 700}
    # A student sees their own record only; classmates are named but not exposed.
    assert seen[2]["entries"][0]["student"] is None
    assert seen[2]["entries"][1]["student"] == {"id": encode_global_id("Student", me)}


class Socket:
    """A raw graphql-transport-ws client, to check the protocol itself."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(message).decode())

    async def receive(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, self.ws.close_code)
        value: dict[str, Any] = orjson.loads(msg.data)
        return value

    async def closed_with(self) -> int | None:
        msg = await asyncio.wait_for(self.ws.receive(), timeout=10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        return self.ws.close_code

    async def init(self, bearer_token: str) -> None:
        await self.send({"type": "connection_init", "payload": {"token": bearer_token}})
        assert await self.receive() == {"type": "connection_ack"}


Connect = Callable[..., Awaitable[Socket]]


@pytest.fixture
async def connect(server: TestClient[Any, Any]) -> AsyncIterator[Connect]:
    """Opens raw sockets for a test and closes them after it (an unread close would stall shutdown)."""
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_socket(protocols: tuple[str, ...] = ("graphql-transport-ws",)) -> Socket:
        ws = await server.session.ws_connect(server.make_url("/graphql"), protocols=protocols)
        opened.append(ws)
        return Socket(ws)

    yield open_socket
    for ws in opened:
        await ws.close()


async def test_protocol_close_codes(
    server: TestClient[Any, Any], school: School, monkeypatch: pytest.MonkeyPatch, connect: Connect
) -> None:
    good = token("teacher", school.teacher_a, school.org_a)
    sock = await connect(
        protocols=("graphql-sse",)
    )  # "graphql-ws" is served: tests/ws/test_legacy_protocol.py
    assert await sock.closed_with() == 4406

    sock = await connect()
    await sock.send({"type": "subscribe", "id": "1", "payload": {"query": "{ viewer { role } }"}})
    assert await sock.closed_with() == 4401

    sock = await connect()
    await sock.send({"type": "connection_init", "payload": {"token": "not-a-jwt"}})
    assert await sock.closed_with() == 4403

    sock = await connect()
    await sock.send({"type": "connection_init", "payload": {}})
    assert await sock.closed_with() == 4403

    sock = await connect()
    await sock.init(good)
    await sock.send({"type": "connection_init", "payload": {"token": good}})
    assert await sock.closed_with() == 4429

    sock = await connect()
    await sock.init(good)
    await sock.ws.send_str("{not json")
    assert await sock.closed_with() == 4400

    sock = await connect()
    await sock.init(good)
    variables = {"game": school.game_id, "scope": "CLASS"}
    await sock.send({"type": "subscribe", "id": "a", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["type"] == "next"
    await sock.send({"type": "subscribe", "id": "a", "payload": {"query": BOARD, "variables": variables}})
    assert await sock.closed_with() == 4409

    monkeypatch.setattr(subscriptions, "INIT_TIMEOUT_SECONDS", 0.1)
    sock = await connect()
    assert await sock.closed_with() == 4408


async def test_ping_queries_errors_cap_and_complete(
    server: TestClient[Any, Any], school: School, connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("student", school.students_a[0], school.org_a))
    await sock.send({"type": "ping"})
    assert await sock.receive() == {"type": "pong"}

    # Queries run over the socket too: one `next`, then `complete`.
    await sock.send(
        {"type": "subscribe", "id": "q", "payload": {"query": "{ viewer { role rateLimit { limit } } }"}}
    )
    assert await sock.receive() == {
        "id": "q",
        "type": "next",
        "payload": {"data": {"viewer": {"role": "STUDENT", "rateLimit": {"limit": 3000}}}},
    }
    assert await sock.receive() == {"id": "q", "type": "complete"}

    # A document that does not validate is an `error` message for that id; the socket stays open.
    await sock.send({"type": "subscribe", "id": "bad", "payload": {"query": "subscription { nope }"}})
    error = await sock.receive()
    assert (error["id"], error["type"]) == ("bad", "error")
    assert error["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    # The HTTP cost budget holds over the socket too.
    heavy = "{ games(first: 100) { edges { node { category { games(first: 100) { edges { node { id } } } } } } } }"
    await sock.send({"type": "subscribe", "id": "heavy", "payload": {"query": heavy}})
    too_complex = await sock.receive()
    assert (too_complex["id"], too_complex["type"]) == ("heavy", "error")
    assert too_complex["payload"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"

    # An unknown game: the subscription resolver refuses in a `next` with errors, then completes.
    missing = {"game": encode_global_id("Game", 999_999), "scope": "CLASS"}
    await sock.send({"type": "subscribe", "id": "nf", "payload": {"query": BOARD, "variables": missing}})
    not_found = await sock.receive()
    assert not_found["type"] == "next"
    assert not_found["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await sock.receive() == {"id": "nf", "type": "complete"}

    # The per-connection cap (2 here): the third running subscription is refused.
    variables = {"game": school.game_id, "scope": "CLASS"}
    for op in ("s1", "s2", "s3"):
        await sock.send({"type": "subscribe", "id": op, "payload": {"query": BOARD, "variables": variables}})
    replies = [await sock.receive() for _ in range(3)]
    assert sorted((r["id"], r["type"]) for r in replies) == [("s1", "next"), ("s2", "next"), ("s3", "error")]
    capped = next(r for r in replies if r["id"] == "s3")
    assert capped["payload"][0]["extensions"]["code"] == "SUBSCRIPTION_LIMIT"

    # complete from the client stops one and frees its place.
    await sock.send({"type": "complete", "id": "s1"})
    await sock.send({"type": "subscribe", "id": "s4", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["id"] == "s4"


async def test_other_organizations_stay_pseudonymous(
    server: TestClient[Any, Any], school: School, clean_db: asyncpg.Pool, connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("student", school.students_b[0], school.org_b))
    variables = {"game": school.game_id, "scope": "GLOBAL"}
    await sock.send({"type": "subscribe", "id": "g", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["payload"]["data"]["leaderboardUpdated"]["entries"] == []
    await commit_score(server, clean_db, school, school.students_a[0], 900)
    update = (await sock.receive())["payload"]["data"]["leaderboardUpdated"]
    [entry] = update["entries"]
    assert entry["student"] is None
    assert entry["displayName"].startswith("Player ")
    assert "First" not in entry["displayName"]

    # A class board of another organization is not reachable: CLASS means the viewer's own class.
    await sock.send(
        {
            "type": "subscribe",
            "id": "c",
            "payload": {"query": BOARD, "variables": {**variables, "scope": "CLASS"}},
        }
    )
    assert (await sock.receive())["payload"]["data"]["leaderboardUpdated"]["entries"] == []


async def test_a_burst_of_scores_is_coalesced(
    server: TestClient[Any, Any], school: School, clean_db: asyncpg.Pool, connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("teacher", school.teacher_a, school.org_a))
    variables = {"game": school.game_id, "scope": "CLASS"}
    await sock.send({"type": "subscribe", "id": "b", "payload": {"query": BOARD, "variables": variables}})
    await sock.receive()
    # A class finishing together: ten commits land, then their ten events arrive back to back.
    events = []
    for i in range(10):
        student, at = school.students_a[i % 3], T0 + timedelta(seconds=i)
        await factories.make_score(clean_db, school.org_a, student, school.game, 100 + i, at=at)
        events.append(
            ScoreCommitted(
                0, school.game, student, school.org_a, school.teacher_a, 100 + i, "challenge", 100 + i, at
            )
        )
    for event in events:
        await server.app[EVENTS].score_committed(event)
    received = []
    while True:
        board = (await sock.receive())["payload"]["data"]["leaderboardUpdated"]
        received.append(board)
        if [e["score"] for e in board["entries"]] == [109, 108, 107]:
            break
    assert len(received) < 5  # the first change at once, the rest folded (200 ms apart)


async def test_ending_the_session_closes_its_sockets(
    database_url: str, redis_prefix: str, school: School
) -> None:
    """An open socket keeps its session alive; endSession ends the socket too (at the next refresh)."""
    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, session_idle_seconds=3
    )
    sid_token = issue_token(
        DEV_JWT_SECRET, Role.TEACHER, school.teacher_a, school.org_a, session_id="ws-session"
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        ws = await client.session.ws_connect(client.make_url("/graphql"), protocols=("graphql-transport-ws",))
        sock = Socket(ws)
        await sock.init(sid_token)
        response = await client.post(
            "/graphql",
            json={"query": "mutation { endSession { ended } }"},
            headers={"Authorization": f"Bearer {sid_token}"},
        )
        assert (await response.json())["data"] == {"endSession": {"ended": True}}
        assert await sock.closed_with() == 4403


async def test_without_redis_everything_runs_in_process(
    database_url: str, school: School, clean_db: asyncpg.Pool
) -> None:
    """No REDIS_URL (the embedded `make run`): boards read PostgreSQL and updates fan out in process."""
    async with TestClient(TestServer(create_app(http_settings(database_url)))) as client:
        ws = await client.session.ws_connect(client.make_url("/graphql"), protocols=("graphql-transport-ws",))
        sock = Socket(ws)
        await sock.init(token("teacher", school.teacher_a, school.org_a))
        variables = {"game": school.game_id, "scope": "CLASS"}
        await sock.send({"type": "subscribe", "id": "1", "payload": {"query": BOARD, "variables": variables}})
        assert (await sock.receive())["payload"]["data"]["leaderboardUpdated"]["entries"] == []
        await commit_score(client, clean_db, school, school.students_a[0], 640)
        update = (await sock.receive())["payload"]["data"]["leaderboardUpdated"]
        assert [e["score"] for e in update["entries"]] == [640]
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { rateLimit { shared limit } } }"},
            headers={"Authorization": f"Bearer {token('teacher', school.teacher_a, school.org_a)}"},
        )
        assert (await response.json())["data"] == {"viewer": {"rateLimit": {"shared": False, "limit": 3000}}}
        await ws.close()


async def test_a_socket_does_not_outlive_its_token(
    server: TestClient[Any, Any], school: School, connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("student", school.students_a[0], school.org_a, ttl=2))
    variables = {"game": school.game_id, "scope": "CLASS"}
    await sock.send({"type": "subscribe", "id": "1", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["type"] == "next"
    assert await sock.closed_with() == 4403
