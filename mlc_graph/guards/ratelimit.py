"""Requests and cost points per user per hour: a sliding window shared by every instance through Redis.

The window is 60 one-minute buckets in one Redis hash per user (`r:<minute>` requests, `c:<minute>`
cost points), keyed under the user's organization's hash tag (`rl:{o<org>}:<role>:<id>`) so the
combined admission script can touch it and the organization's sessions on one Redis Cluster slot.
One Lua script reads the live buckets, drops expired ones, decides and counts, so the check is atomic
and costs one round trip; it uses Redis's clock so instances never disagree. A refused request is not
counted. Without Redis (or while it is down) the same algorithm runs in process.

Clients see both quotas (RateLimitResult.headers()): `RateLimit-Policy` and `RateLimit` as structured-field
lists with the policies `"requests"` and `"points"` (draft-ietf-httpapi-ratelimit-headers), and the older
RateLimit-Limit/Remaining/Reset for the tightest; a refusal (error()) names the quota that refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlc_graph.domain.quotas import Quota
from mlc_graph.domain.tiers import WINDOW_SECONDS, Tier
from mlc_graph.platform.errors import RateLimitedError
from mlc_graph.platform.redis import RedisState, RedisUnavailable, tag

BUCKET_SECONDS = 60
# Policy ids in the RateLimit-Policy and RateLimit headers, and `extensions.quota` of a refusal.
REQUESTS_POLICY = "requests"
POINTS_POLICY = "points"
POINTS_UNIT = "cost-points"
_BUCKETS = WINDOW_SECONDS // BUCKET_SECONDS

# A Lua function (also used by the combined admission script in mlc_graph.realtime.services): the user's hash
# `key`; returns {allowed, requests used, cost used, oldest live bucket, now}. `dry` only reads.
WINDOW_FUNCTION = """
local function hit_window(key, window, bucket, lim_r, lim_c, cost, dry)
  local now = tonumber(redis.call('TIME')[1])
  local current = math.floor(now / bucket)
  local oldest = current - math.floor(window / bucket) + 1
  local data = redis.call('HGETALL', key)
  local used_r, used_c, first = 0, 0, current
  local stale = {}
  for i = 1, #data, 2 do
    local field = data[i]
    local b = tonumber(string.sub(field, 3))
    if b < oldest then
      stale[#stale + 1] = field
    else
      local v = tonumber(data[i + 1])
      if string.sub(field, 1, 1) == 'r' then
        used_r = used_r + v
        if b < first then first = b end
      else
        used_c = used_c + v
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  if dry then return {1, used_r, used_c, first, now} end
  if used_r + 1 > lim_r or used_c + cost > lim_c then return {0, used_r, used_c, first, now} end
  redis.call('HINCRBY', key, 'r:' .. current, 1)
  redis.call('HINCRBY', key, 'c:' .. current, cost)
  redis.call('EXPIRE', key, window + bucket)
  return {1, used_r + 1, used_c + cost, first, now}
end
"""
# KEYS[1] the user's hash. ARGV: window, bucket, request limit, cost limit, cost, dry-run (1 = peek).
_SCRIPT = (
    WINDOW_FUNCTION
    + "return hit_window(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    + "tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1')"
)


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """One decision, with what the RateLimit-* headers and `viewer.rateLimit` report."""

    allowed: bool
    limit: int
    used: int
    cost_limit: int
    cost_used: int
    cost: int
    reset_at: int  # epoch seconds when the oldest counted minute leaves the window
    now: int
    shared: bool  # False when counted in process (Redis unavailable or not configured)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def cost_remaining(self) -> int:
        return max(0, self.cost_limit - self.cost_used)

    @property
    def reset_in(self) -> int:
        return max(0, self.reset_at - self.now)

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_in)

    @property
    def refused_by(self) -> str | None:
        """The quota that refused this request (`requests` or `points`), None when it was allowed."""
        if self.allowed:
            return None
        return REQUESTS_POLICY if self.used + 1 > self.limit else POINTS_POLICY

    def quotas(self) -> tuple[Quota, Quota]:
        """Both quotas, requests first, in the shape the headers and `viewer.rateLimit` report."""
        return (
            Quota(REQUESTS_POLICY, "requests", self.limit, self.used, self.remaining, self.reset_in),
            Quota(
                POINTS_POLICY,
                POINTS_UNIT,
                self.cost_limit,
                self.cost_used,
                self.cost_remaining,
                self.reset_in,
            ),
        )

    def tightest(self) -> Quota:
        """The quota with the smallest share left (the one that refused, when one did); requests on a tie."""
        requests, points = self.quotas()
        if self.refused_by is not None:
            return points if self.refused_by == POINTS_POLICY else requests
        return points if points.share_left < requests.share_left else requests

    def headers(self) -> dict[str, str]:
        """`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers, structured fields)
        with both quotas, and the older three headers for the tightest one."""
        quotas = self.quotas()
        tightest = self.tightest()
        headers = {
            "RateLimit-Policy": ", ".join(q.policy_item() for q in quotas),
            "RateLimit": ", ".join(q.state_item() for q in quotas),
            "RateLimit-Limit": str(tightest.limit),
            "RateLimit-Remaining": str(tightest.remaining),
            "RateLimit-Reset": str(tightest.reset_in),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def error(self) -> RateLimitedError:
        quota = self.tightest()
        what = f"{quota.limit} cost points" if quota.name == POINTS_POLICY else f"{quota.limit} requests"
        detail = (
            f"; this operation costs {self.cost} and {self.cost_remaining} are left"
            if quota.name == POINTS_POLICY
            else ""
        )
        return RateLimitedError(
            f"Rate limit of {what} per hour exceeded{detail}; retry in {self.retry_after} s",
            quota=quota.name,
            limit=self.limit,
            costLimit=self.cost_limit,
            cost=self.cost,
            retryAfter=self.retry_after,
            resetAt=self.reset_at,
        )


class _LocalWindow:
    """The same bucketed window in process, for one instance while Redis is unavailable."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._calls = 0

    def hit(self, key: str, tier: Tier, cost: int, dry: bool) -> tuple[bool, int, int, int, int]:
        now = int(time.time())
        current = now // BUCKET_SECONDS
        oldest = current - _BUCKETS + 1
        self._calls += 1
        if self._calls % 1024 == 0:
            self._sweep(oldest)
        buckets = self._buckets.setdefault(key, {})
        for b in [b for b in buckets if b < oldest]:
            del buckets[b]
        used_r = sum(v[0] for v in buckets.values())
        used_c = sum(v[1] for v in buckets.values())
        first = min(buckets, default=current)
        if dry:
            return True, used_r, used_c, first, now
        if used_r + 1 > tier.requests_per_hour or used_c + cost > tier.cost_per_hour:
            return False, used_r, used_c, first, now
        counts = buckets.setdefault(current, [0, 0])
        counts[0] += 1
        counts[1] += cost
        return True, used_r + 1, used_c + cost, first, now

    def _sweep(self, oldest: int) -> None:
        # Bound memory: forget users whose every bucket has left the window.
        for key in [k for k, b in self._buckets.items() if not b or max(b) < oldest]:
            del self._buckets[key]


class RateLimiter:
    """Checks and counts a request against its user's tier; `identity` names the user (role:id)."""

    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self._local = _LocalWindow()
        self._script: Any = redis.script(_SCRIPT)

    async def hit(
        self, identity: str, tier: Tier, cost: int = 1, org_id: int | None = None
    ) -> RateLimitResult:
        """Count one request of `cost` points if the tier allows it; the decision either way."""
        return await self._run(identity, tier, max(0, cost), dry=False, org_id=org_id)

    async def peek(self, identity: str, tier: Tier, org_id: int | None = None) -> RateLimitResult:
        """The current usage without counting anything (for `viewer.rateLimit` outside the pipeline)."""
        return await self._run(identity, tier, 0, dry=True, org_id=org_id)

    def window_args(self, tier: Tier, cost: int, dry: bool) -> list[int]:
        return [
            WINDOW_SECONDS,
            BUCKET_SECONDS,
            tier.requests_per_hour,
            tier.cost_per_hour,
            cost,
            1 if dry else 0,
        ]

    async def _run(
        self, identity: str, tier: Tier, cost: int, dry: bool, org_id: int | None = None
    ) -> RateLimitResult:
        key = self.key(identity, org_id)
        try:
            raw = await self.redis.run(
                "ratelimit", lambda _r: self._script(keys=[key], args=self.window_args(tier, cost, dry))
            )
        except RedisUnavailable:
            return self.local(identity, tier, cost, dry)
        return self.result(raw, tier, cost, shared=True)

    def key(self, identity: str, org_id: int | None = None) -> str:
        """The user's window; under the organization's hash tag when known (what admission uses)."""
        if org_id is None:
            return self.redis.key("rl", identity)
        return self.redis.key("rl", tag(f"o{org_id}"), identity)

    def local(self, identity: str, tier: Tier, cost: int, dry: bool = False) -> RateLimitResult:
        """The decision of this instance alone (Redis not configured or unavailable)."""
        ok, used_r, used_c, first, now = self._local.hit(identity, tier, cost, dry)
        return self.result([int(ok), used_r, used_c, first, now], tier, cost, shared=False)

    @staticmethod
    def result(raw: Sequence[Any], tier: Tier, cost: int, shared: bool) -> RateLimitResult:
        """A decision from hit_window's reply {allowed, used, cost used, oldest bucket, now}."""
        allowed, used_r, used_c, first, now = (int(v) for v in raw)
        return RateLimitResult(
            allowed=bool(allowed),
            limit=tier.requests_per_hour,
            used=used_r,
            cost_limit=tier.cost_per_hour,
            cost_used=used_c,
            cost=cost,
            reset_at=(first + _BUCKETS) * BUCKET_SECONDS,
            now=now,
            shared=shared,
        )


def identity_for(role: str, user_id: int) -> str:
    """Students and teachers have separate id sequences, so the role is part of the user's identity."""
    return f"{role.lower()}:{user_id}"
