"""The legacy `graphql-ws` subprotocol (subscriptions-transport-ws): the same admission and the same checks
as tests/ws/test_subscriptions.py, in the older protocol's messages, with a real client library too."""

# The fixtures come from the current protocol's module (one server and school for both): their names are
# imported and then taken as test parameters, which pyflakes reads as redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from mlc_graph.app import create_app
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from mlc_graph.ws import legacy, subscriptions
from resolvers.relay import encode_global_id
from tests.support.database import REDIS_URL
from tests.support.http import http_settings, token
from tests.ws.test_subscriptions import (  # noqa: F401 - fixtures shared with the current protocol's tests
    BOARD,
    School,
    Socket,
    commit_score,
    module_prefix,
    redis_prefix,
    school,
    server,
    ws_url,
)

LEGACY = ("graphql-ws",)


class LegacySocket(Socket):
    async def init(self, bearer_token: str) -> None:
        await self.send({"type": "connection_init", "payload": {"token": bearer_token}})
        assert await self.receive() == {"type": "connection_ack"}
        assert await self.receive() == {"type": "ka"}  # the keep-alive starts with the ack


Connect = Callable[..., Awaitable[LegacySocket]]


@pytest.fixture
async def connect(server: TestClient[Any, Any]) -> AsyncIterator[Connect]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_socket(protocols: tuple[str, ...] = LEGACY) -> LegacySocket:
        ws = await server.session.ws_connect(server.make_url("/graphql"), protocols=protocols)
        opened.append(ws)
        return LegacySocket(ws)

    yield open_socket
    for ws in opened:
        await ws.close()


async def test_gql_legacy_client_gets_the_board_then_each_update(
    server: TestClient[Any, Any], school: School, clean_db: asyncpg.Pool
) -> None:
    me = school.students_a[0]
    transport = WebsocketsTransport(
        url=ws_url(server),
        init_payload={"authorization": f"Bearer {token('student', me, school.org_a)}"},
        subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL],  # gql's name for the legacy protocol
    )
    seen: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        assert transport.subprotocol == "graphql-ws"
        request = GraphQLRequest(BOARD, variable_values={"game": school.game_id, "scope": "CLASS"})
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
    assert [(e["rank"], e["score"]) for e in seen[1]["entries"]] == [(1, 700)]
    assert seen[1]["viewerEntry"] == {"rank": 1, "score": 700}
    assert [e["score"] for e in seen[2]["entries"]] == [800, 700]
    assert seen[2]["viewerEntry"] == {"rank": 2, "score": 700}
    assert seen[2]["entries"][0]["student"] is None
    assert seen[2]["entries"][1]["student"] == {"id": encode_global_id("Student", me)}


async def test_the_offered_subprotocol_picks_the_protocol(connect: Connect) -> None:
    sock = await connect()
    assert sock.ws.protocol == "graphql-ws"
    sock = await connect(protocols=("graphql-ws", "graphql-transport-ws"))
    assert sock.ws.protocol == "graphql-transport-ws", "a client offering both gets the current one"
    sock = await connect(protocols=("graphql-sse",))
    assert await sock.closed_with() == 4406
    sock = await connect(protocols=())
    assert await sock.closed_with() == 4406


async def test_legacy_close_codes(
    server: TestClient[Any, Any], school: School, monkeypatch: pytest.MonkeyPatch, connect: Connect
) -> None:
    good = token("teacher", school.teacher_a, school.org_a)
    sock = await connect()
    await sock.send({"type": "start", "id": "1", "payload": {"query": "{ viewer { role } }"}})
    assert await sock.closed_with() == 4401

    # A refused token: the protocol's connection_error first (with the reason), then the close.
    sock = await connect()
    await sock.send({"type": "connection_init", "payload": {"token": "not-a-jwt"}})
    error = await sock.receive()
    assert error["type"] == "connection_error"
    assert "invalid token" in error["payload"]["message"]
    assert await sock.closed_with() == 4403

    sock = await connect()
    await sock.send({"type": "connection_init", "payload": {}})
    assert (await sock.receive())["type"] == "connection_error"
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
    await sock.send({"type": "subscribe", "id": "x", "payload": {"query": "{ viewer { role } }"}})
    assert await sock.closed_with() == 4400, "the current protocol's messages are not this one's"

    sock = await connect()
    await sock.init(good)
    await sock.send({"type": "connection_terminate"})
    assert await sock.closed_with() == 1000

    monkeypatch.setattr(subscriptions, "INIT_TIMEOUT_SECONDS", 0.1)
    sock = await connect()
    assert await sock.closed_with() == 4408


async def test_legacy_queries_errors_cap_stop_and_restart(
    server: TestClient[Any, Any], school: School, connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("student", school.students_a[0], school.org_a))

    await sock.send(
        {"type": "start", "id": "q", "payload": {"query": "{ viewer { role rateLimit { limit } } }"}}
    )
    assert await sock.receive() == {
        "id": "q",
        "type": "data",
        "payload": {"data": {"viewer": {"role": "STUDENT", "rateLimit": {"limit": 3000}}}},
    }
    assert await sock.receive() == {"id": "q", "type": "complete"}

    # Refusals are `error` with one error object (the protocol's clients read a map).
    await sock.send({"type": "start", "id": "bad", "payload": {"query": "subscription { nope }"}})
    error = await sock.receive()
    assert (error["id"], error["type"]) == ("bad", "error")
    assert error["payload"]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    heavy = "{ games(first: 100) { edges { node { category { games(first: 100) { edges { node { id } } } } } } } }"
    await sock.send({"type": "start", "id": "heavy", "payload": {"query": heavy}})
    too_complex = await sock.receive()
    assert (too_complex["id"], too_complex["type"]) == ("heavy", "error")
    assert too_complex["payload"]["extensions"]["code"] == "QUERY_TOO_COMPLEX"

    missing = {"game": encode_global_id("Game", 999_999), "scope": "CLASS"}
    await sock.send({"type": "start", "id": "nf", "payload": {"query": BOARD, "variables": missing}})
    not_found = await sock.receive()
    assert not_found["type"] == "data"
    assert not_found["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await sock.receive() == {"id": "nf", "type": "complete"}

    variables = {"game": school.game_id, "scope": "CLASS"}
    for op in ("s1", "s2", "s3"):
        await sock.send({"type": "start", "id": op, "payload": {"query": BOARD, "variables": variables}})
    replies = [await sock.receive() for _ in range(3)]
    assert sorted((r["id"], r["type"]) for r in replies) == [("s1", "data"), ("s2", "data"), ("s3", "error")]
    capped = next(r for r in replies if r["id"] == "s3")
    assert capped["payload"]["extensions"]["code"] == "SUBSCRIPTION_LIMIT"

    # stop ends one (the server confirms with complete) and frees its place.
    await sock.send({"type": "stop", "id": "s1"})
    assert await sock.receive() == {"id": "s1", "type": "complete"}
    await sock.send({"type": "start", "id": "s4", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["id"] == "s4"

    # A start reusing a running id replaces that operation instead of closing the socket.
    await sock.send({"type": "start", "id": "s4", "payload": {"query": BOARD, "variables": variables}})
    replaced = await sock.receive()
    assert (replaced["id"], replaced["type"]) == ("s4", "data")


async def test_legacy_socket_follows_its_session_and_token(
    database_url: str, redis_prefix: str, school: School, server: TestClient[Any, Any], connect: Connect
) -> None:
    sock = await connect()
    await sock.init(token("student", school.students_a[0], school.org_a, ttl=2))
    variables = {"game": school.game_id, "scope": "CLASS"}
    await sock.send({"type": "start", "id": "1", "payload": {"query": BOARD, "variables": variables}})
    assert (await sock.receive())["type"] == "data"
    assert await sock.closed_with() == 4403, "a socket does not outlive its token"

    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, session_idle_seconds=3
    )
    sid_token = issue_token(
        DEV_JWT_SECRET, Role.TEACHER, school.teacher_a, school.org_a, session_id="legacy-ws"
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        ws = await client.session.ws_connect(client.make_url("/graphql"), protocols=LEGACY)
        legacy_sock = LegacySocket(ws)
        await legacy_sock.init(sid_token)
        response = await client.post(
            "/graphql",
            json={"query": "mutation { endSession { ended } }"},
            headers={"Authorization": f"Bearer {sid_token}"},
        )
        assert (await response.json())["data"] == {"endSession": {"ended": True}}
        assert await legacy_sock.closed_with() == 4403, "ending the session ends its legacy sockets too"


async def test_keep_alive_repeats(
    server: TestClient[Any, Any], school: School, monkeypatch: pytest.MonkeyPatch, connect: Connect
) -> None:
    monkeypatch.setattr(legacy, "KEEPALIVE_SECONDS", 0.05)
    sock = await connect()
    await sock.init(token("teacher", school.teacher_a, school.org_a))
    assert await sock.receive() == {"type": "ka"}
    assert await sock.receive() == {"type": "ka"}
