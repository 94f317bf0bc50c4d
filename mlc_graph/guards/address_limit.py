"""Requests per client address per minute, for the unauthenticated web-vitals beacon.

A fixed one-minute window per address: `INCR` then `EXPIRE ... NX` on `<prefix>beacon:<address>:<minute>`
in Redis when it is configured (every instance counts together), the same count in process otherwise or
while Redis is down (each instance then allows the limit on its own, as the user quotas do). Fixed
windows let a client send up to twice the limit across a minute boundary; for analytics samples that is
fine, and it costs one round trip with no script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mlc_graph.platform.redis import RedisState, RedisUnavailable

WINDOW_SECONDS = 60
# Bound the in-process table: past this many addresses in one minute, older windows are dropped first.
MAX_LOCAL_ADDRESSES = 100_000


@dataclass(frozen=True, slots=True)
class AddressDecision:
    allowed: bool
    count: int
    retry_after: int  # seconds until the window turns over


@dataclass(slots=True)
class AddressLimiter:
    per_minute: int
    _local: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (window, count)

    async def hit(self, address: str, redis: RedisState | None) -> AddressDecision:
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        retry_after = max(1, (window + 1) * WINDOW_SECONDS - int(now))
        count = None
        if redis is not None and redis.configured:
            try:
                count = await redis.run("beacon_limit", lambda client: _count(client, redis, address, window))
            except RedisUnavailable:
                count = None
        if count is None:
            count = self._count_locally(address, window)
        return AddressDecision(count <= self.per_minute, count, retry_after)

    def _count_locally(self, address: str, window: int) -> int:
        seen_window, count = self._local.get(address, (window, 0))
        count = count + 1 if seen_window == window else 1
        if address not in self._local and len(self._local) >= MAX_LOCAL_ADDRESSES:
            for stale in [a for a, (w, _) in self._local.items() if w != window]:
                del self._local[stale]
            if len(self._local) >= MAX_LOCAL_ADDRESSES:  # all current: forget the oldest entry
                del self._local[next(iter(self._local))]
        self._local[address] = (window, count)
        return count


async def _count(client: Any, redis: RedisState, address: str, window: int) -> int:
    key = redis.key("beacon", address, window)
    async with client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2, nx=True)
        count, _ = await pipe.execute()
    return int(count)
