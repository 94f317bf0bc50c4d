"""The per-user and per-organization quotas of a tier: sessions, requests and cost points per hour.

`Quotas.admit` is what the admission pipeline's quota stage calls for every operation: the session is
touched and the request counted in one Redis round trip (one Lua script); while Redis is unavailable this
process counts on its own (`shared` is then False in `viewer.rateLimit`).
"""

from __future__ import annotations

from typing import Any

from mlc_graph.domain.tiers import Tier
from mlc_graph.guards.ratelimit import WINDOW_FUNCTION, RateLimiter, RateLimitResult, identity_for
from mlc_graph.guards.sessions import SESSION_FUNCTION, SessionCheck, SessionTracker
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.redis import RedisState, RedisUnavailable

# KEYS: the organization's sessions, the sid's ended marker, the user's window, all three under the
# organization's hash tag (one Redis Cluster slot). ARGV: sid, idle, cap,
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


class Quotas:
    """One per app: the rate limiter and the session tracker on the shared Redis state."""

    def __init__(self, redis: RedisState, tiers: TierResolver, session_idle_seconds: int) -> None:
        self.redis = redis
        self.tiers = tiers
        self.limiter = RateLimiter(redis)
        self.sessions = SessionTracker(redis, session_idle_seconds)
        self._admit: Any = redis.script(_ADMIT)

    async def admit(
        self, principal: Principal, tier: Tier, cost: int
    ) -> tuple[SessionCheck, RateLimitResult | None]:
        """Session check, then (when admitted) the request counted: one Redis round trip for both."""
        sessions, limiter = self.sessions, self.limiter
        identity = identity_for(principal.role.value, principal.user_id)
        keys = [
            *sessions.keys(principal.org_id, principal.session_id),
            limiter.key(identity, principal.org_id),
        ]
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
        tier = await self.tiers.tier_of(principal.org_id)
        identity = identity_for(principal.role.value, principal.user_id)
        return await self.limiter.peek(identity, tier, principal.org_id)
