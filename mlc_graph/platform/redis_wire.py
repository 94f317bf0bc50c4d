"""One pipelined Redis connection for the Lua scripts every request runs (admission, board reads).

redis-py spends about 55-75 us of CPU on one EVALSHA (connection-pool checkout and release, command
packing, its retry and observability wrappers, the NOSCRIPT handling) for a script Redis itself runs in
a few microseconds: on W4 that was a third of the server's calls per request. This channel writes the
command's RESP bytes by hand on one connection shared by every request of the process, so concurrent
requests pipeline on it (the commands of one event-loop turn leave in one write; Redis answers in
order; replies that arrive together are parsed together by hiredis), and costs about 7 us per call with
32 concurrent callers against redis-py's 55 (`python -m bench.micro`).

Only for a plain `redis://` URL (TCP). TLS, unix sockets and Redis Cluster keep redis-py's clients: there
a script runs through `register_script` as before (`RedisState.script` picks). A failure of any kind (a
refused connection, a reset, a reply later than `timeout`) fails every call waiting on the connection
and closes it; the next call reconnects. RedisState turns the failure into an outage (fallback and
probe) exactly as it does for redis-py's failures.

Exceptions:
    RedisReplyError   Redis answered with an error (other than NOSCRIPT, which reloads the script)
    ConnectionError   the connection closed under a call, or could not be opened
    TimeoutError      no reply within `timeout`: the connection is dropped (replies are ordered)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis
from redis.asyncio.connection import parse_url


class RedisReplyError(Exception):
    """Redis answered the command with an error reply."""


class LuaScript:
    """A script's source and its SHA1 (what EVALSHA names it by)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def encode_command(parts: Sequence[str | int | float]) -> bytes:
    """The RESP array of bulk strings for one command (str() of each part: floats as repr, as redis-py)."""
    texts = list(map(str, parts))
    text = f"*{len(texts)}\r\n" + "".join([f"${len(t)}\r\n{t}\r\n" for t in texts])
    if text.isascii():  # the common case: character counts are byte counts
        return text.encode()
    out = [b"*%d\r\n" % len(texts)]
    for t in texts:
        data = t.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Wire(asyncio.Protocol):
    """The connection: requests in order, replies matched to them in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reader = hiredis.Reader(encoding="utf-8")
        self._waiting: deque[tuple[asyncio.Future[Any], asyncio.TimerHandle]] = deque()
        self._outgoing: list[bytes] = []
        self._failure: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the interface without subclassing asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if not self._waiting:  # a reply nobody asked for: the stream cannot be trusted
                self._fail(ConnectionError("unexpected reply from Redis"))
                return
            future, timer = self._waiting.popleft()
            timer.cancel()
            if future.done():  # its caller was cancelled; the reply still had to be consumed
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RedisReplyError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        failure = self._failure or exc or ConnectionError("Redis closed the connection")
        while self._waiting:
            future, timer = self._waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_exception(failure)

    def request(self, payload: bytes) -> asyncio.Future[Any]:
        if self.closed or self.transport is None:
            raise ConnectionError("Redis connection closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._timed_out)
        self._waiting.append((future, timer))
        # Corked until the loop's next turn: the requests of one turn (several connections' requests
        # reach admission together under load) go out in one write, one system call instead of each.
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if not self.closed and self.transport is not None:
            self.transport.write(b"".join(outgoing))

    def _timed_out(self) -> None:
        self._fail(TimeoutError(f"no reply from Redis within {self.timeout} s"))

    def _fail(self, failure: BaseException) -> None:
        if self.closed:
            return
        self._failure = failure
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails everything still waiting


class ScriptChannel:
    """EVALSHA (EVAL on NOSCRIPT) on one lazily opened, pipelined connection."""

    def __init__(self, url: str, timeout: float) -> None:
        options = parse_url(url)
        self.host: str = options.get("host", "localhost")
        self.port: int = int(options.get("port", 6379))
        self._setup: list[bytes] = []
        if options.get("password") is not None:
            user = options.get("username")
            self._setup.append(
                encode_command(["AUTH", user, options["password"]] if user else ["AUTH", options["password"]])
            )
        if int(options.get("db", 0)):
            self._setup.append(encode_command(["SELECT", options["db"]]))
        self.timeout = timeout
        self._wire: _Wire | None = None
        self._opening: asyncio.Future[_Wire] | None = None

    @staticmethod
    def supports(url: str) -> bool:
        """Plain TCP URLs only; anything else stays on redis-py."""
        return urlsplit(url).scheme.lower() == "redis"

    async def run(
        self, script: LuaScript, keys: Sequence[str | int], args: Sequence[str | int | float]
    ) -> Any:
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._open()
        try:
            return await wire.request(encode_command(["EVALSHA", script.sha, len(keys), *keys, *args]))
        except RedisReplyError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its scripts: EVAL runs the script and caches it for the next EVALSHA.
        return await wire.request(encode_command(["EVAL", script.source, len(keys), *keys, *args]))

    async def _open(self) -> _Wire:
        # One task opens the connection for every request arriving meanwhile; shielded, so a caller
        # cancelled while waiting (its client went away) does not cancel the others' connection.
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    async def _connect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        _, wire = await asyncio.wait_for(
            loop.create_connection(lambda: _Wire(self.timeout), self.host, self.port), self.timeout
        )
        try:
            for command in self._setup:
                await wire.request(command)
        except BaseException:
            wire._fail(ConnectionError("Redis refused the connection's AUTH or SELECT"))
            raise
        return wire

    def _opened(self, opening: asyncio.Future[_Wire]) -> None:
        self._opening = None
        if not opening.cancelled() and opening.exception() is None:
            self._wire = opening.result()

    def reset(self) -> None:
        """Drop the connection (after an outage): the next call opens a fresh one."""
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None and not wire.closed:
            wire.closed = True
            wire.transport.abort()

    async def close(self) -> None:
        self.reset()
        await asyncio.sleep(0)  # let the transport's connection_lost run
