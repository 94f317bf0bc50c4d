"""Compression: brotli or gzip over 1 KB when accepted; never for small bodies, streams or WebSockets."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.http.compression import MIN_BYTES, choose_encoding, maybe_compress

BIG = b'{"data": "' + b"x" * 4000 + b'"}'
SMALL = b'{"data": "tiny"}'


@web.middleware
async def _compress(request: web.Request, handler: Any) -> web.StreamResponse:
    return await maybe_compress(request, await handler(request))


async def _big(_request: web.Request) -> web.Response:
    return web.Response(body=BIG, content_type="application/json")


async def _small(_request: web.Request) -> web.Response:
    return web.Response(body=SMALL, content_type="application/json")


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: " + b"y" * 4000 + b"\n\n")
    await response.write_eof()
    return response


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_bytes(BIG)
    await ws.close()
    return ws


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[_compress])
    app.router.add_get("/big", _big)
    app.router.add_get("/small", _small)
    app.router.add_get("/events", _events)
    app.router.add_get("/ws", _socket)
    async with TestClient(TestServer(app)) as client:
        yield client


def test_encoding_choice_honours_q_values() -> None:
    assert choose_encoding("gzip, deflate, br") == "br"
    assert choose_encoding("gzip") == "gzip"
    assert choose_encoding("br;q=0.5, gzip") == "gzip"
    assert choose_encoding("br;q=0, gzip;q=0") is None
    assert choose_encoding("identity") is None
    assert choose_encoding("*") == "br"
    assert choose_encoding(None) is None


@pytest.mark.parametrize(("accept", "decode"), [("br", brotli.decompress), ("gzip", gzip.decompress)])
async def test_big_bodies_are_compressed_when_accepted(
    client: TestClient[Any, Any], accept: str, decode: Any
) -> None:
    response = await client.get("/big", headers={"Accept-Encoding": accept}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == accept
    assert response.headers["Vary"] == "Accept-Encoding"
    raw = await response.read()
    assert len(raw) < len(BIG) // 10
    assert decode(raw) == BIG


async def test_nothing_is_compressed_unless_asked_and_worth_it(client: TestClient[Any, Any]) -> None:
    plain = await client.get("/big", headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    assert await plain.read() == BIG
    small = await client.get("/small", headers={"Accept-Encoding": "br, gzip"}, auto_decompress=False)
    assert len(SMALL) <= MIN_BYTES
    assert "Content-Encoding" not in small.headers


async def test_event_streams_and_websockets_are_left_alone(client: TestClient[Any, Any]) -> None:
    events = await client.get("/events", headers={"Accept-Encoding": "br, gzip"}, auto_decompress=False)
    assert "Content-Encoding" not in events.headers
    assert (await events.read()).startswith(b"data: yyyy")
    async with client.ws_connect("/ws", headers={"Accept-Encoding": "br, gzip"}) as ws:
        assert (await ws.receive_bytes()) == BIG


async def test_graphql_responses_are_compressed_by_the_app(database_url: str) -> None:
    from tests.support.http import app_client, http_settings

    async with app_client(http_settings(database_url)) as client:
        # The schema itself is a big response and needs no data: GraphiQL's introspection, anonymous in dev.
        query = "{ __schema { types { name description fields { name description } } } }"
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Accept-Encoding": "br"}, auto_decompress=False
        )
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "br"
        assert brotli.decompress(await response.read()).startswith(b'{"data":{"__schema"')
