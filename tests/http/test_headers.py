"""Issue 12 item 13: no response says which Python and aiohttp versions serve it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.support.http import app_client, free_port, http_settings, start_server, stop_server, wait_ready

Client = TestClient[Any, Any]


async def test_no_response_carries_a_server_header(database_url: str) -> None:
    async with app_client(http_settings(database_url, max_body_bytes=1_000)) as client:
        responses = [
            await client.post("/graphql", json={"query": "{ __typename }"}),
            await client.get("/graphql", params={"query": "{ __typename }"}),
            await client.get("/graphql", headers={"Accept": "text/html"}),
            await client.get("/healthz"),
            await client.get("/readyz"),
            await client.get("/metrics"),
            await client.get("/no-such-page"),
            await client.delete("/graphql"),
            await client.post("/graphql", data=b"x" * 5_000, headers={"Content-Type": "application/json"}),
        ]
        statuses = sorted({r.status for r in responses})
        assert {200, 404, 405, 413} <= set(statuses)
        assert [r.headers.get("Server") for r in responses] == [None] * len(responses)
        async with client.session.ws_connect(
            client.make_url("/graphql"), protocols=("graphql-transport-ws",)
        ) as socket:
            assert "Server" not in socket._response.headers
            await socket.close()
        # A static GraphiQL asset is a FileResponse, prepared on its own path.
        page = await (await client.get("/graphql", headers={"Accept": "text/html"})).text()
        asset = page.split('src="', 1)[1].split('"', 1)[0]
        static = await client.get(asset)
        assert static.status == 200
        assert "Server" not in static.headers


async def test_a_server_process_sends_no_server_header(database_url: str) -> None:
    """The real `mlc-graph serve` (its own runner and site), not only the test server."""
    port = free_port()
    process = start_server(database_url, port)
    try:
        await wait_ready(port, process)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
            assert "Server" not in response.headers
    finally:
        stop_server(process)


async def test_a_request_aiohttp_cannot_parse_names_no_versions(database_url: str) -> None:
    """Answers made before routing (a garbled request line) skip the app's hooks: no versions there either."""
    async with app_client(http_settings(database_url)) as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        try:
            writer.write(b"GARBAGE\r\n\r\n")
            await writer.drain()
            head = (await asyncio.wait_for(reader.read(4096), 10)).split(b"\r\n\r\n", 1)[0].decode()
        finally:
            writer.close()
    lines = head.split("\r\n")
    assert lines[0].endswith("400 Bad Request")
    servers = [line for line in lines if line.lower().startswith("server:")]
    assert servers == ["Server: mlc-graph"]
