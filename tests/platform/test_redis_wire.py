"""The pipelined script channel (platform/redis_wire.py) against real Redis servers: replies reach their
own callers under concurrency, NOSCRIPT reloads, error replies, a stalled Redis, a killed connection, a
cancelled caller, AUTH and SELECT; and RedisState sends the request path's scripts over it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as redis_sync
import uvloop

from mlc_graph.platform.redis import RedisState, RedisUnavailable
from mlc_graph.platform.redis_wire import LuaScript, RedisReplyError, ScriptChannel, encode_command
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.redis_server import RedisServer

redis_server = redis_support.redis_server

ECHO = LuaScript("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}")
SET = LuaScript("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])")
FAIL = LuaScript("return redis.error_reply('WRONGTHING deliberately')")


@pytest.fixture
async def channel() -> AsyncIterator[ScriptChannel]:
    chan = ScriptChannel(REDIS_URL, timeout=2.0)
    yield chan
    await chan.close()


def clients_named(port: int, name: str) -> int:
    admin = redis_sync.Redis(port=port)
    try:
        return sum(1 for c in admin.client_list() if c.get("name") == name)
    finally:
        admin.close()


def test_commands_are_encoded_as_resp_bulk_strings() -> None:
    assert encode_command(["EVALSHA", "ab", 1, 2.5]) == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$3\r\n2.5\r\n"
    )
    # Not ASCII: lengths in bytes, not characters.
    assert encode_command(["k\u00e9", 1]) == b"*2\r\n$3\r\nk\xc3\xa9\r\n$1\r\n1\r\n"


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    channel: ScriptChannel, redis_server: RedisServer
) -> None:
    chan = ScriptChannel(redis_server.url, timeout=2.0)
    try:
        results = await asyncio.gather(*(chan.run(ECHO, [f"k{i}"], [f"v{i}", i]) for i in range(200)))
        assert results == [[f"k{i}", f"v{i}", 2 * i] for i in range(200)]
        admin = redis_sync.Redis(port=redis_server.port)
        try:
            # the admin connection and the channel's single one
            assert len(admin.client_list()) == 2
        finally:
            admin.close()
    finally:
        await chan.close()
    # The shared server's channel works too (NOSCRIPT on first use there: the script is loaded by EVAL).
    assert await channel.run(ECHO, ["a"], ["b", 21]) == ["a", "b", 42]


async def test_a_flushed_script_cache_is_reloaded(redis_server: RedisServer) -> None:
    chan = ScriptChannel(redis_server.url, timeout=2.0)
    admin = redis_sync.Redis(port=redis_server.port)
    try:
        assert await chan.run(ECHO, ["a"], ["b", 1]) == ["a", "b", 2]
        assert admin.script_exists(ECHO.sha) == [True]
        admin.script_flush()
        assert await chan.run(ECHO, ["a"], ["c", 2]) == ["a", "c", 4]
        assert admin.script_exists(ECHO.sha) == [True]
    finally:
        admin.close()
        await chan.close()


async def test_an_error_reply_raises_and_leaves_the_connection_usable(channel: ScriptChannel) -> None:
    with pytest.raises(RedisReplyError, match="WRONGTHING deliberately"):
        await channel.run(FAIL, [], [])
    assert await channel.run(ECHO, ["x"], ["y", 3]) == ["x", "y", 6]


async def test_a_stalled_redis_times_out_every_waiting_call_then_reconnects(
    redis_server: RedisServer,
) -> None:
    chan = ScriptChannel(redis_server.url, timeout=0.3)
    admin = redis_sync.Redis(port=redis_server.port)
    try:
        await chan.run(ECHO, ["a"], ["b", 1])  # connected and loaded
        admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # type: ignore[no-untyped-call]
        results = await asyncio.gather(
            *(chan.run(ECHO, ["a"], ["b", i]) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, TimeoutError) for r in results), results
        admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        # A late reply must never reach a later caller: the timed-out connection was dropped.
        assert await chan.run(ECHO, ["late"], ["z", 50]) == ["late", "z", 100]
    finally:
        admin.close()
        await chan.close()


async def test_a_closed_connection_fails_its_callers_and_the_next_call_reconnects(
    redis_server: RedisServer,
) -> None:
    chan = ScriptChannel(redis_server.url, timeout=5.0)
    admin = redis_sync.Redis(port=redis_server.port)
    try:
        await chan.run(ECHO, ["a"], ["b", 1])
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # type: ignore[no-untyped-call]
        pending = [asyncio.ensure_future(chan.run(ECHO, ["a"], ["b", i])) for i in range(3)]
        await asyncio.sleep(0.05)
        redis_server.stop()  # the server dies holding the paused calls
        for call in pending:
            with pytest.raises(ConnectionError):
                await call
        redis_server.start()
        assert await chan.run(ECHO, ["again"], ["b", 4]) == ["again", "b", 8]
    finally:
        admin.close()
        await chan.close()


async def test_a_cancelled_caller_does_not_shift_the_replies(channel: ScriptChannel) -> None:
    first = asyncio.ensure_future(channel.run(ECHO, ["1"], ["one", 1]))
    second = asyncio.ensure_future(channel.run(ECHO, ["2"], ["two", 2]))
    await asyncio.sleep(0)  # both written
    first.cancel()
    assert await second == ["2", "two", 4]
    assert await channel.run(ECHO, ["3"], ["three", 3]) == ["3", "three", 6]


async def test_auth_and_database_come_from_the_url() -> None:
    server = RedisServer("--requirepass", "s3cret")
    server.start()
    try:
        key = f"wire-{uuid.uuid4().hex[:6]}"
        chan = ScriptChannel(f"redis://:s3cret@127.0.0.1:{server.port}/3", timeout=2.0)
        try:
            assert await chan.run(SET, [key], ["kept"]) == "kept"
        finally:
            await chan.close()
        admin = redis_sync.Redis(port=server.port, password="s3cret", db=3)
        try:
            assert admin.get(key) == b"kept"
        finally:
            admin.close()
        wrong = ScriptChannel(f"redis://:nope@127.0.0.1:{server.port}/0", timeout=2.0)
        try:
            with pytest.raises(RedisReplyError, match=r"WRONGPASS|invalid"):
                await wrong.run(ECHO, ["a"], ["b", 1])
        finally:
            await wrong.close()
    finally:
        server.stop()


def test_the_channel_runs_on_uvloop_as_the_server_does() -> None:
    """The server runs uvloop, whose transports are not asyncio.Transport subclasses."""

    async def calls() -> list[object]:
        chan = ScriptChannel(REDIS_URL, timeout=2.0)
        try:
            return list(await asyncio.gather(*(chan.run(ECHO, ["u"], ["v", i]) for i in range(20))))
        finally:
            await chan.close()

    assert uvloop.run(calls()) == [["u", "v", 2 * i] for i in range(20)]


def test_only_plain_tcp_urls_use_the_channel() -> None:
    assert ScriptChannel.supports("redis://127.0.0.1:6379/0")
    assert not ScriptChannel.supports("rediss://127.0.0.1:6380/0")
    assert not ScriptChannel.supports("unix:///run/redis.sock")
    assert not ScriptChannel.supports("redis+cluster://127.0.0.1:7000")
    assert RedisState("redis+cluster://127.0.0.1:7000").channel is None


async def test_redis_state_runs_scripts_on_the_channel_and_degrades_when_redis_dies(
    redis_server: RedisServer,
) -> None:
    state = RedisState(redis_server.url, probe_seconds=0.0)
    try:
        echo = state.script(ECHO.source)
        assert echo is not None
        assert await state.run("echo", lambda _r: echo(keys=["k"], args=["v", 5])) == ["k", "v", 10]
        assert state.channel is not None and state.channel._wire is not None  # it went over the channel
        redis_server.stop()
        with pytest.raises(RedisUnavailable):
            await state.run("echo", lambda _r: echo(keys=["k"], args=["v", 5]))
        redis_server.start()
        assert await state.run("echo", lambda _r: echo(keys=["k"], args=["w", 6])) == ["k", "w", 12]
    finally:
        await state.close()


async def test_the_calls_of_one_loop_turn_leave_in_one_write(redis_server: RedisServer) -> None:
    """Counted on the transport: 40 calls issued together are one write; a later call is another."""
    chan = ScriptChannel(redis_server.url, timeout=2.0)
    try:
        await chan.run(ECHO, ["a"], ["b", 1])  # connected, script loaded
        wire = chan._wire
        assert wire is not None and wire.transport is not None
        writes: list[bytes] = []
        real_write = wire.transport.write

        def counting(data: Any) -> None:
            writes.append(data)
            real_write(data)

        wire.transport.write = counting  # type: ignore[method-assign]
        results = await asyncio.gather(*(chan.run(ECHO, ["k"], ["v", i]) for i in range(40)))
        assert results == [["k", "v", 2 * i] for i in range(40)]
        assert len(writes) == 1 and writes[0].count(b"EVALSHA") == 40
        await chan.run(ECHO, ["k"], ["v", 0])
        assert len(writes) == 2
    finally:
        await chan.close()
