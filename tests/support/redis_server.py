"""Real Redis for the real-time tests: a unique key prefix per test (deleted after) and throwaway servers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as redis_sync

from mlc_graph.platform.redis import RedisState
from tests.support.database import REDIS_URL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def delete_prefix(url: str, prefix: str) -> None:
    client = redis_sync.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"mlctest:{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_prefix(REDIS_URL, prefix)


@pytest.fixture
async def redis_state(redis_prefix: str) -> AsyncIterator[RedisState]:
    state = RedisState(REDIS_URL, prefix=redis_prefix)
    yield state
    await state.close()


class RedisServer:
    """A redis-server of our own on a spare port, which a test may stop and start again."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = extra  # more redis-server options, e.g. ("--requirepass", "secret")
        self.password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_sync.Redis(port=self.port, password=self.password)
        try:
            for _ in range(100):
                with contextlib.suppress(redis_sync.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
