"""Issue 12 item 10: the WebSocket handshake refuses a browser origin that is not on MLC_ALLOWED_ORIGINS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from tests.support import factories
from tests.support.http import http_settings, token

PROTOCOLS = ("graphql-transport-ws",)
SPA = "https://app.mlc.example"


@pytest.fixture(scope="module")
async def server(database_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    settings = http_settings(database_url, allowed_origins=(SPA,))
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def student_token(clean_db: asyncpg.Pool) -> str:
    org = await factories.make_org(clean_db, "A", tier="ENSEMBLE")
    teacher = await factories.make_teacher(clean_db, org)
    students = await factories.make_students(clean_db, org, teacher, 1)
    return token("student", students[0], org)


async def _acknowledged(server: TestClient[Any, Any], bearer: str, headers: dict[str, str]) -> bool:
    async with server.session.ws_connect(
        server.make_url("/graphql"), protocols=PROTOCOLS, headers=headers
    ) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"token": bearer}})
        message: dict[str, Any] = await ws.receive_json(timeout=10)
        return message == {"type": "connection_ack"}


@pytest.mark.parametrize("origin", ["http://evil.example", "https://app.mlc.example.evil.example", "null"])
async def test_a_page_on_another_origin_is_refused_at_the_handshake(
    server: TestClient[Any, Any], student_token: str, origin: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _acknowledged(server, student_token, {"Origin": origin})
    assert refused.value.status == 403


async def test_an_allowed_origin_the_server_itself_and_non_browsers_are_acknowledged(
    server: TestClient[Any, Any], student_token: str
) -> None:
    own = f"http://{server.host}:{server.port}"
    assert await _acknowledged(server, student_token, {"Origin": SPA})
    assert await _acknowledged(server, student_token, {"Origin": SPA.upper().replace("HTTPS", "https")})
    assert await _acknowledged(server, student_token, {"Origin": own})
    assert await _acknowledged(server, student_token, {})


async def test_the_refusal_is_a_graphql_error_body(server: TestClient[Any, Any]) -> None:
    response = await server.get(
        "/graphql",
        headers={
            "Origin": "http://evil.example",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": PROTOCOLS[0],
        },
    )
    assert response.status == 403
    assert (await response.json())["errors"][0]["extensions"]["code"] == "FORBIDDEN"
