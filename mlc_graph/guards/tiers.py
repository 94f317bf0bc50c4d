"""An organization's subscription tier, looked up once per operation by the admission pipeline.

Cached per process for `ttl` seconds (MLC_TIER_CACHE_SECONDS, default 60): a tier changed in the
database takes effect on every instance within that time. A cold cache waits for the database, so the
answer never depends on whether this instance has seen the organization before.
"""

from __future__ import annotations

import time

import asyncpg

from loaders.organizations import fetch_organizations_by_ids
from mlc_graph.domain.tiers import Tier, TierTable
from mlc_graph.platform.db import Executor, QueryStats

MAX_CACHED_ORGANIZATIONS = 10_000


class TierResolver:
    """One per app; `pool` is set once the database pool exists (the app's start-up)."""

    def __init__(self, table: TierTable, ttl_seconds: float, pool: asyncpg.Pool | None = None) -> None:
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.pool = pool
        self._cache: dict[int, tuple[float, str | None]] = {}

    async def tier_of(self, org_id: int) -> Tier:
        """The organization's tier; the free trial for an unknown organization or without a database."""
        now = time.monotonic()
        cached = self._cache.get(org_id)
        if cached is not None and cached[0] > now:
            return self.table.for_tier(cached[1])
        name: str | None = None
        if self.pool is not None:
            # Own stats: this lookup is infrastructure, not part of the operation's SQL count.
            [row] = await fetch_organizations_by_ids(Executor(self.pool, QueryStats()), [org_id])
            name = row.tier if row is not None else None
        if len(self._cache) >= MAX_CACHED_ORGANIZATIONS:
            self._cache.clear()
        self._cache[org_id] = (now + self.ttl_seconds, name)
        return self.table.for_tier(name)
