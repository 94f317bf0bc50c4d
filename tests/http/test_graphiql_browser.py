"""GraphiQL in a real browser: the server process serves the page and its assets, headless Chromium opens
`/graphql?token=...`, runs the demo query and shows its result, and never asks anything of another host.

Driven over the Chrome DevTools protocol with aiohttp's WebSocket client (no browser download needed).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from mlc_graph.http.graphiql import assets_installed
from tests.support import factories
from tests.support.http import free_port, start_server, stop_server, token, wait_ready

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
    pytest.mark.skipif(not assets_installed(), reason="GraphiQL assets missing: run `make assets`"),
]


class DevTools:
    """A minimal Chrome DevTools protocol client: commands by id, events kept for inspection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(15):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == ident:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    result: dict[str, Any] = message.get("result", {})
                    return result
                self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply.get("result", {}).get("value")

    async def wait_for(self, expression: str, within: float = 30.0) -> Any:
        """Poll `expression` until it is truthy (bounded); returns its value."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"never true: {expression}\nconsole: {self.console()}")

    def console(self) -> list[str]:
        return [
            str(e["params"].get("entry", e["params"]).get("text", e["params"]))
            for e in self.events
            if e.get("method") in ("Log.entryAdded", "Runtime.exceptionThrown", "Runtime.consoleAPICalled")
        ]

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]


@pytest.fixture
def chromium() -> Iterator[int]:
    """Headless Chromium with a fresh profile; yields its DevTools port."""
    profile = tempfile.mkdtemp(prefix="mlc-chromium-")
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        yield int(port_file.read_text().splitlines()[0])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def server(clean_db: asyncpg.Pool, database_url: str) -> AsyncIterator[tuple[int, str]]:
    """The real server process on a free port, with a teacher and a class; yields (port, teacher token)."""
    org = await factories.make_org(clean_db)
    teacher_id = await factories.make_teacher(clean_db, org, "Ada", "Lovelace")
    await factories.make_students(clean_db, org, teacher_id, 3)
    port = free_port()
    process = start_server(database_url, port)
    try:
        await wait_ready(port, process)
        yield port, token("teacher", teacher_id, org)
    finally:
        code, output = stop_server(process)
        assert code == 0, output


async def test_graphiql_runs_the_demo_query_with_a_token(chromium: int, server: tuple[int, str]) -> None:
    port, jwt = server
    origin = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{chromium}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tools = DevTools(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await tools.send(f"{domain}.enable")
            await tools.send("Page.navigate", url=f"{origin}/graphql?token={jwt}")
            await tools.wait_for("!!document.querySelector('.graphiql-execute-button')")
            # The token went into the headers editor and out of the address bar.
            assert await tools.evaluate("location.search") == ""
            headers = await tools.wait_for(
                "Array.from(document.querySelectorAll('.CodeMirror'))"
                ".map(e => e.CodeMirror.getValue()).join('\\n')"
            )
            assert f"Bearer {jwt}" in headers
            await tools.evaluate("document.querySelector('.graphiql-execute-button').click()")
            result = await tools.wait_for(
                "(() => { const e = document.querySelector('.result-window .CodeMirror');"
                " const v = e && e.CodeMirror.getValue(); return v && v.includes('displayName') && v; })()"
            )
            assert '"role": "TEACHER"' in result
            assert "A. Lovelace" in result
            assert '"totalCount": 3' in result
            foreign = [u for u in tools.requested_urls() if not u.startswith((origin, "data:", "about:"))]
            assert foreign == [], f"GraphiQL reached beyond this server: {foreign}"
