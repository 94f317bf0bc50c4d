"""Concurrent sessions per organization: a Redis sorted set of session id -> last request time.

A session (a token's `sid`) is active while it made a request in the last `idle_seconds`. One Lua
script drops idle sessions, refreshes a known one or admits a new one under the tier's cap, so the
count is exact across instances. `end` removes a session at once and remembers it as ended, so its
token cannot reopen it (a logout). Without Redis the same rules hold per instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mlc_graph.platform.errors import ApiError, SessionEndedError, SessionLimitError
from mlc_graph.platform.redis import RedisState, RedisUnavailable, tag

# Long enough to outlive the default 12 h token; an ended sid is refused until then.
ENDED_TTL_SECONDS = 24 * 3600

# A Lua function (also used by the combined admission script in realtime.services): the organization's
# sorted set `zkey`, the sid's ended marker `ended`. Returns {status, active}: 1 admitted, 0 over the
# cap, -1 ended.
SESSION_FUNCTION = """
local function touch_session(zkey, ended, sid, idle, cap)
  if redis.call('EXISTS', ended) == 1 then return {-1, 0} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', '(' .. (now - idle))
  if not redis.call('ZSCORE', zkey, sid) then
    local active = redis.call('ZCARD', zkey)
    if active >= cap then return {0, active} end
  end
  redis.call('ZADD', zkey, now, sid)
  redis.call('EXPIRE', zkey, idle + 60)
  return {1, redis.call('ZCARD', zkey)}
end
"""
# KEYS[1] the organization's sorted set, KEYS[2] the ended marker of this sid. ARGV: sid, idle, cap.
_TOUCH = (
    SESSION_FUNCTION + "return touch_session(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))"
)

# KEYS[1] the organization's sorted set, KEYS[2] the ended marker. ARGV: sid, marker ttl.
_END = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[2]))
return removed
"""


def org_tag(org_id: int) -> str:
    """The hash tag of an organization's keys: its sessions, ended markers and its users' rate windows."""
    return tag(f"o{org_id}")


@dataclass(frozen=True, slots=True)
class SessionCheck:
    admitted: bool
    ended: bool
    active: int
    cap: int

    def error(self) -> ApiError:
        if self.ended:
            return SessionEndedError("This session has ended; sign in again", reason="SESSION_ENDED")
        return SessionLimitError(
            f"Your organization already has {self.active} active sessions (limit {self.cap}); "
            "end one or wait for one to go idle",
            limit=self.cap,
            active=self.active,
        )


class _LocalSessions:
    def __init__(self) -> None:
        self._orgs: dict[int, dict[str, float]] = {}
        self._ended: dict[str, float] = {}

    def touch(self, org_id: int, sid: str, idle: float, cap: int) -> tuple[int, int]:
        now = time.time()
        if self._ended.get(f"{org_id}:{sid}", 0.0) > now:
            return -1, 0
        sessions = self._orgs.setdefault(org_id, {})
        for old in [s for s, seen in sessions.items() if seen < now - idle]:
            del sessions[old]
        if sid not in sessions and len(sessions) >= cap:
            return 0, len(sessions)
        sessions[sid] = now
        return 1, len(sessions)

    def end(self, org_id: int, sid: str) -> bool:
        now = time.time()
        self._ended = {s: until for s, until in self._ended.items() if until > now}
        self._ended[f"{org_id}:{sid}"] = now + ENDED_TTL_SECONDS
        return self._orgs.get(org_id, {}).pop(sid, None) is not None

    def active(self, org_id: int, idle: float) -> int:
        now = time.time()
        return sum(1 for seen in self._orgs.get(org_id, {}).values() if seen >= now - idle)


class SessionTracker:
    """Admits, refreshes and ends sessions against the tier's cap."""

    def __init__(self, redis: RedisState, idle_seconds: int = 900) -> None:
        self.redis = redis
        self.idle_seconds = idle_seconds
        self._local = _LocalSessions()
        self._touch: Any = redis.script(_TOUCH)
        self._end: Any = redis.script(_END)

    def local_touch(self, org_id: int, sid: str, cap: int) -> SessionCheck:
        """The decision of this instance alone (Redis not configured or unavailable)."""
        status, active = self._local.touch(org_id, sid, self.idle_seconds, cap)
        return SessionCheck(admitted=status == 1, ended=status == -1, active=active, cap=cap)

    def keys(self, org_id: int, sid: str) -> list[str]:
        # A token without a `sid` uses its subject as one, so the ended marker is scoped by organization.
        # Both carry the organization's hash tag (as do its users' rate windows): one slot per script.
        return [self.redis.key("sessions", org_tag(org_id)), self.redis.key("ended", org_tag(org_id), sid)]

    async def touch(self, org_id: int, sid: str, cap: int) -> SessionCheck:
        """Record a request of session `sid`; refused when it would be one too many (or has ended)."""
        try:
            raw = await self.redis.run(
                "sessions",
                lambda _r: self._touch(keys=self.keys(org_id, sid), args=[sid, self.idle_seconds, cap]),
            )
            status, active = int(raw[0]), int(raw[1])
        except RedisUnavailable:
            status, active = self._local.touch(org_id, sid, self.idle_seconds, cap)
        return SessionCheck(admitted=status == 1, ended=status == -1, active=active, cap=cap)

    async def end(self, org_id: int, sid: str) -> bool:
        """End a session now: its place is free at once and its token can no longer open it."""
        local = self._local.end(org_id, sid)
        try:
            removed = await self.redis.run(
                "sessions",
                lambda _r: self._end(keys=self.keys(org_id, sid), args=[sid, ENDED_TTL_SECONDS]),
            )
        except RedisUnavailable:
            return local
        return bool(removed) or local

    async def active(self, org_id: int) -> int:
        key = self.redis.key("sessions", org_tag(org_id))
        try:
            count = await self.redis.run(
                "sessions",
                lambda r: r.zcount(key, time.time() - self.idle_seconds, "+inf"),
            )
        except RedisUnavailable:
            return self._local.active(org_id, self.idle_seconds)
        return int(count)
