"""Concurrent sessions per organization, on the real Redis and in process."""

from __future__ import annotations

import asyncio

from mlc_graph.guards.sessions import SessionTracker
from mlc_graph.platform.redis import RedisState
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.redis_server import RedisServer

# Fixtures shared by the real-time tests (a module attribute is how pytest finds them).
redis_prefix = redis_support.redis_prefix
redis_state = redis_support.redis_state
redis_server = redis_support.redis_server


async def test_cap_admits_known_sessions_and_refuses_new_ones(redis_state: RedisState) -> None:
    tracker = SessionTracker(redis_state, idle_seconds=900)
    for sid in ("a", "b", "c"):
        assert (await tracker.touch(1, sid, cap=3)).admitted
    assert (await tracker.touch(1, "a", cap=3)).admitted  # a known session keeps working
    refused = await tracker.touch(1, "d", cap=3)
    assert (refused.admitted, refused.ended, refused.active, refused.cap) == (False, False, 3, 3)
    error = refused.error()
    assert error.extensions == {"code": "SESSION_LIMIT", "limit": 3, "active": 3}
    # Another organization counts separately.
    assert (await tracker.touch(2, "d", cap=3)).admitted
    assert await tracker.active(1) == 3


async def test_ending_a_session_frees_a_place_at_once(redis_state: RedisState) -> None:
    tracker = SessionTracker(redis_state)
    assert (await tracker.touch(7, "a", cap=1)).admitted
    assert not (await tracker.touch(7, "b", cap=1)).admitted
    assert await tracker.end(7, "a")
    assert (await tracker.touch(7, "b", cap=1)).admitted
    ended = await tracker.touch(7, "a", cap=5)
    assert ended.ended
    assert ended.error().extensions == {"code": "UNAUTHENTICATED", "reason": "SESSION_ENDED"}


async def test_idle_sessions_stop_counting(redis_state: RedisState) -> None:
    tracker = SessionTracker(redis_state, idle_seconds=1)
    assert (await tracker.touch(3, "a", cap=1)).admitted
    assert not (await tracker.touch(3, "b", cap=1)).admitted
    await asyncio.sleep(1.2)
    assert (await tracker.touch(3, "b", cap=1)).admitted


async def test_two_instances_share_the_count(redis_state: RedisState, redis_prefix: str) -> None:
    other_state = RedisState(REDIS_URL, redis_prefix)
    try:
        a, b = SessionTracker(redis_state), SessionTracker(other_state)
        assert (await a.touch(4, "s1", cap=2)).admitted
        assert (await b.touch(4, "s2", cap=2)).admitted
        assert not (await a.touch(4, "s3", cap=2)).admitted
        assert await b.end(4, "s1")
        assert (await a.touch(4, "s3", cap=2)).admitted
    finally:
        await other_state.close()


async def test_in_process_without_redis() -> None:
    tracker = SessionTracker(RedisState(None))
    assert (await tracker.touch(1, "a", cap=1)).admitted
    assert not (await tracker.touch(1, "b", cap=1)).admitted
    assert await tracker.end(1, "a")
    assert (await tracker.touch(1, "b", cap=1)).admitted
    assert (await tracker.touch(1, "a", cap=5)).ended


async def test_redis_stopping_keeps_admitting(redis_server: RedisServer) -> None:
    state = RedisState(redis_server.url, probe_seconds=0.0)
    tracker = SessionTracker(state)
    try:
        assert (await tracker.touch(1, "a", cap=2)).admitted
        redis_server.stop()
        assert (await tracker.touch(1, "a", cap=2)).admitted
        redis_server.start()
        assert (await tracker.touch(1, "b", cap=2)).admitted
    finally:
        await state.close()
