"""HTTP test helpers: an in-process app client on the session loop, and a real server process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET, PoolSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
GRAPHQL_RESPONSE = "application/graphql-response+json"


def http_settings(database_url: str, **overrides: Any) -> Settings:
    """Development settings on the test database with a small pool."""
    base = Settings(database_url=database_url, pool=PoolSettings(min_size=1, max_size=4, acquire_timeout=2.0))
    return replace(base, **overrides)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """A TestClient on a fresh app (its own pool), closed on exit."""
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def token(role: str, user_id: int, org_id: int, secret: str = DEV_JWT_SECRET, ttl: int = 3600) -> str:
    return issue_token(secret, Role(role.upper()), user_id, org_id, ttl_seconds=ttl)


def bearer(role: str, user_id: int, org_id: int, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, user_id, org_id, **kwargs)}"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(database_url: str, port: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """`mlc-graph serve` in a child process; call `wait_ready` before using it."""
    environ = {**os.environ, "DATABASE_URL": database_url, "MLC_ENV": "development", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "mlc_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(
    port: int, process: subprocess.Popen[bytes], within: float = 30.0, workers: int = 1
) -> set[int]:
    """Poll until /readyz answers 200 and `workers` distinct processes answered /healthz (bounded);
    returns their pids.

    With several workers one ready socket says nothing of the others, which may still be importing.
    """
    deadline = time.monotonic() + within
    pids: set[int] = set()
    ready = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            code, output = stop_server(process)
            raise RuntimeError(f"server exited with {code}:\n{output}")
        try:
            # A new connection each time, so the kernel spreads them over the workers' sockets.
            async with aiohttp.ClientSession() as session:
                if not ready:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        ready = response.status == 200
                if ready:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        pids.add((await response.json())["pid"])
                    if len(pids) >= workers:
                        return pids
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"server on port {port} not ready after {within}s ({len(pids)}/{workers} workers)")


def stop_server(
    process: subprocess.Popen[bytes], timeout: float = 20.0, *, terminate: bool = True
) -> tuple[int, str]:
    """SIGTERM (unless the caller already sent it), wait, and return (exit code, output); kills it if it
    does not stop in time. A second SIGTERM would race the server's own shutdown: once its event loop has
    closed, the default handler is back and the signal kills a process that was exiting cleanly."""
    if terminate and process.poll() is None:
        process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace")
