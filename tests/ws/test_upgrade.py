"""GET /graphql hands a WebSocket upgrade to the subscriptions feature, inside every middleware; without
the feature, or on another method, the request is plain HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from mlc_graph.keys import WEBSOCKET
from mlc_graph.observability.logs import ACCESS_LOGGER, FIELDS
from tests.support.http import app_client, http_settings

PROTOCOLS = ("graphql-transport-ws",)
# What a browser sends to open a socket (the key is RFC 6455's sample).
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Protocol": PROTOCOLS[0],
    "Accept": "application/json",
}


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    async with app_client(http_settings(database_url)) as client:
        yield client


@pytest.fixture
async def without_websockets(database_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The app as it would be without the WebSocket feature: nothing registered under its key."""
    app = create_app(http_settings(database_url))
    del app[WEBSOCKET]
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_socket_passes_the_request_id_and_observe_middlewares(
    server: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        ws = await server.ws_connect("/graphql", protocols=PROTOCOLS, headers={"X-Request-ID": "ws-trace.1"})
        assert ws.protocol == PROTOCOLS[0]
        await ws.close()
        for _ in range(100):  # the line is written when the handler returns, after the close
            if any(r.name == ACCESS_LOGGER for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    [line] = [r.__dict__[FIELDS] for r in caplog.records if r.name == ACCESS_LOGGER]
    assert {k: line[k] for k in ("request_id", "method", "path", "status")} == {
        "request_id": "ws-trace.1",
        "method": "GET",
        "path": "/graphql",
        "status": 101,
    }


async def test_an_upgrade_without_the_websocket_feature_is_a_plain_get(
    without_websockets: TestClient[Any, Any],
) -> None:
    upgraded = await without_websockets.get("/graphql", headers=UPGRADE)
    plain = await without_websockets.get("/graphql", headers={"Accept": "application/json"})
    assert upgraded.status == plain.status == 400
    assert await upgraded.json() == await plain.json()


async def test_an_upgrade_header_on_a_post_is_plain_http(server: TestClient[Any, Any]) -> None:
    response = await server.post("/graphql", json={"query": "{ __typename }"}, headers=UPGRADE)
    assert response.status == 200
    assert (await response.json())["data"] == {"__typename": "Query"}
