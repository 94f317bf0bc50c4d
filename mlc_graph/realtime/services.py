"""The real-time services of one process (quotas, sessions, live boards, fan-out).

`Realtime` bundles what issue 5 adds (Redis state, rate limiter, session tracker, live boards, board
fan-out); the app factory creates one and hands it to every Context as `services["realtime"]`. The
request stage that applies the quotas is `mlc_graph.ws.subscriptions.quota_stage` (this module must not
import the pipeline: resolvers import it, and the pipeline imports resolvers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from loaders.organizations import fetch_organizations_by_ids
from mlc_graph.domain.tiers import Tier, TierTable
from mlc_graph.execution.context import Context
from mlc_graph.guards.ratelimit import WINDOW_FUNCTION, RateLimiter, RateLimitResult, identity_for
from mlc_graph.guards.sessions import SESSION_FUNCTION, SessionCheck, SessionTracker
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.redis import RedisState, RedisUnavailable
from mlc_graph.realtime.live_boards import LiveLeaderboards
from mlc_graph.realtime.pubsub import BoardUpdates

SERVICE = "realtime"
# KEYS: the organization's sessions, the sid's ended marker, the user's window. ARGV: sid, idle, cap,
# then the window's (window, bucket, request limit, cost limit, cost, dry). The request is counted only
# when the session is admitted. Returns {status, active[, allowed, used, cost used, oldest, now]}.
_ADMIT = (
    SESSION_FUNCTION
    + WINDOW_FUNCTION
    + """
local s = touch_session(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
if s[1] ~= 1 then return s end
local r = hit_window(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
                     tonumber(ARGV[8]), ARGV[9] == '1')
return {s[1], s[2], r[1], r[2], r[3], r[4], r[5]}
"""
)
# An organization's tier changes rarely (a sales event); a minute of staleness saves a query per request.
TIER_CACHE_SECONDS = 60.0


@dataclass(slots=True)
class Realtime:
    settings: Settings
    redis: RedisState
    tiers: TierTable
    limiter: RateLimiter
    sessions: SessionTracker
    boards: LiveLeaderboards
    updates: BoardUpdates
    pool: asyncpg.Pool | None = None
    # Prices an operation (the cost analyzer, when installed): (document text, params) -> points.
    cost_of: Any = None
    _tier_cache: dict[int, tuple[float, str | None]] = field(default_factory=dict)
    _admit: Any = None

    def __post_init__(self) -> None:
        if self.redis.client is not None:
            self._admit = self.redis.client.register_script(_ADMIT)

    @classmethod
    def create(cls, settings: Settings) -> Realtime:
        redis = RedisState(settings.redis_url, prefix=settings.redis_prefix)
        boards = LiveLeaderboards(redis)
        updates = BoardUpdates(redis, interval=settings.leaderboard_coalesce_ms / 1000)
        boards.on_change(updates.publish)
        return cls(
            settings=settings,
            redis=redis,
            tiers=TierTable.from_overrides(settings.tier_overrides),
            limiter=RateLimiter(redis),
            sessions=SessionTracker(redis, settings.session_idle_seconds),
            boards=boards,
            updates=updates,
        )

    def cached_tier(self, org_id: int) -> Tier | None:
        """The organization's tier if this process looked it up recently, without waiting for the database."""
        cached = self._tier_cache.get(org_id)
        if cached is None or cached[0] <= time.monotonic():
            return None
        return self.tiers.for_tier(cached[1])

    async def tier_of(self, org_id: int) -> Tier:
        """The organization's tier (cached per process); the free trial when it cannot be read."""
        cached = self._tier_cache.get(org_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return self.tiers.for_tier(cached[1])
        name: str | None = None
        if self.pool is not None:
            # Own stats: this lookup is infrastructure, not part of the operation's SQL count.
            [row] = await fetch_organizations_by_ids(Executor(self.pool, QueryStats()), [org_id])
            name = row.tier if row is not None else None
        if len(self._tier_cache) > 10_000:
            self._tier_cache.clear()
        self._tier_cache[org_id] = (now + TIER_CACHE_SECONDS, name)
        return self.tiers.for_tier(name)

    async def admit(
        self, principal: Principal, tier: Tier, cost: int
    ) -> tuple[SessionCheck, RateLimitResult | None]:
        """Session check, then (when admitted) the request counted: one Redis round trip for both."""
        sessions, limiter = self.sessions, self.limiter
        identity = identity_for(principal.role.value, principal.user_id)
        keys = [*sessions.keys(principal.org_id, principal.session_id), limiter.key(identity)]
        args = [
            principal.session_id,
            sessions.idle_seconds,
            tier.sessions,
            *limiter.window_args(tier, cost, False),
        ]
        try:
            raw = await self.redis.run("admit", lambda _r: self._admit(keys=keys, args=args))
        except RedisUnavailable:
            check = sessions.local_touch(principal.org_id, principal.session_id, tier.sessions)
            return check, (limiter.local(identity, tier, cost) if check.admitted else None)
        status, active = int(raw[0]), int(raw[1])
        check = SessionCheck(admitted=status == 1, ended=status == -1, active=active, cap=tier.sessions)
        return check, (limiter.result(raw[2:], tier, cost, shared=True) if check.admitted else None)

    async def admit_session(self, principal: Principal, tier: Tier) -> SessionCheck:
        return await self.sessions.touch(principal.org_id, principal.session_id, tier.sessions)

    async def usage(self, principal: Principal) -> RateLimitResult:
        """Current usage without counting (for viewer.rateLimit when the stage did not run)."""
        tier = await self.tier_of(principal.org_id)
        return await self.limiter.peek(identity_for(principal.role.value, principal.user_id), tier)

    async def start(self, pool: asyncpg.Pool | None) -> None:
        self.pool = pool
        await self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.redis.close()


def realtime_of(context: Context) -> Realtime | None:
    service = context.services.get(SERVICE)
    return service if isinstance(service, Realtime) else None
