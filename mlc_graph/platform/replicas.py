"""Read replicas with read-your-writes: queries on a replica, mutations on the primary, no vanishing scores.

After a user's mutation the primary's WAL position (pg_current_wal_lsn(), read after the commit) is
remembered for that user in a small store: Redis when configured (so every instance sees it), else this
process. That user's reads go to the primary until the chosen replica has replayed past the mark
(pg_last_wal_replay_lsn()), or until the mark expires after `window` seconds, which bounds the extra
load on the primary when a replica falls far behind. Everyone else reads from the replicas.

A background probe reads each replica's replay position and lag every `poll_interval`; a replica that
fails its probe is skipped until it answers again. When a recent writer's mark is ahead of the cached
position, the replica is asked once more before falling back to the primary, so routing does not wait
for the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from mlc_graph.platform.redis import RedisState, RedisUnavailable

log = logging.getLogger(__name__)

SELECT_PRIMARY_LSN = "SELECT pg_current_wal_lsn()::text"
SELECT_REPLAY_LSN = "SELECT pg_last_wal_replay_lsn()::text"
SELECT_REPLICA_STATUS = """
SELECT pg_last_wal_replay_lsn()::text AS replay,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag_seconds
"""

PRIMARY = "primary"
REPLICA = "replica"


def parse_lsn(text: str | None) -> int:
    """'16/B374D848' -> a comparable integer (0 for None: not a replica, or nothing replayed)."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class WriteMarks(Protocol):
    """Where each user's last write position is kept for `window` seconds."""

    async def remember(self, user: str, lsn: int, window: float) -> None: ...

    async def recall(self, user: str) -> int | None: ...


class LocalMarks:
    """In-process marks (single instance, or the fallback when Redis is down); bounded, oldest out first."""

    def __init__(self, max_users: int = 100_000) -> None:
        self._marks: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._max = max_users

    async def remember(self, user: str, lsn: int, window: float) -> None:
        self._marks[user] = (lsn, time.monotonic() + window)
        self._marks.move_to_end(user)
        while len(self._marks) > self._max:
            self._marks.popitem(last=False)

    async def recall(self, user: str) -> int | None:
        mark = self._marks.get(user)
        if mark is None:
            return None
        if mark[1] <= time.monotonic():
            del self._marks[user]
            return None
        return mark[0]


class RedisMarks:
    """Marks in Redis (SET with expiry), shared by every instance; falls back to this process on trouble."""

    def __init__(self, redis: RedisState, fallback: LocalMarks | None = None) -> None:
        self._redis = redis
        self._fallback = fallback or LocalMarks()

    async def remember(self, user: str, lsn: int, window: float) -> None:
        await self._fallback.remember(user, lsn, window)
        key = self._redis.key("ryw", user)
        millis = max(1, int(window * 1000))
        with contextlib.suppress(RedisUnavailable):
            await self._redis.run("ryw_remember", lambda r: r.set(key, str(lsn), px=millis))

    async def recall(self, user: str) -> int | None:
        key = self._redis.key("ryw", user)
        try:
            raw = await self._redis.run("ryw_recall", lambda r: r.get(key))
        except RedisUnavailable:
            return await self._fallback.recall(user)
        return int(raw) if raw else None


@dataclass(slots=True, eq=False)
class Replica:
    name: str
    pool: asyncpg.Pool
    replay_lsn: int = 0
    lag_seconds: float = 0.0
    healthy: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    pool: asyncpg.Pool
    target: str  # "primary" or the replica's name
    reason: str  # mutation, replica, read_your_writes, no_replica


class RoutingMetrics(Protocol):
    """The prometheus collectors the router reports to (mlc_graph.observability.metrics.Metrics has them)."""

    @property
    def replica_up(self) -> Any: ...
    @property
    def replica_lag_bytes(self) -> Any: ...
    @property
    def replica_lag_seconds(self) -> Any: ...
    @property
    def db_routing(self) -> Any: ...


class ReplicaRouter:
    """Chooses the pool for each request and keeps the replicas' positions fresh."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        replicas: list[Replica],
        marks: WriteMarks | None = None,
        window: float = 30.0,
        poll_interval: float = 0.5,
        metrics: RoutingMetrics | None = None,
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.marks: WriteMarks = marks or LocalMarks()
        self.window = window
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.primary_lsn = 0
        self._next = itertools.cycle(range(len(replicas))) if replicas else None
        self._task: asyncio.Task[None] | None = None
        self._routes = {PRIMARY: Route(primary, PRIMARY, "mutation")}

    @property
    def enabled(self) -> bool:
        return bool(self.replicas)

    async def start(self) -> None:
        if self.replicas:
            await self.refresh()
            self._task = asyncio.create_task(self._poll(), name="replica-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception:  # a probe must never kill the loop; each failure is logged in refresh
                log.exception("replica probe failed")

    async def refresh(self) -> None:
        """One probe of the primary's position and every replica's replay position and lag."""
        try:
            self.primary_lsn = parse_lsn(await self.primary.fetchval(SELECT_PRIMARY_LSN, timeout=2.0))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("primary WAL position unavailable: %s", exc)
        for replica in self.replicas:
            await self._probe(replica)

    async def _probe(self, replica: Replica) -> None:
        try:
            row = await replica.pool.fetchrow(SELECT_REPLICA_STATUS, timeout=2.0)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if replica.healthy:
                log.warning("replica %s unavailable, reading from the primary: %s", replica.name, exc)
            replica.healthy = False
        else:
            assert row is not None
            replica.replay_lsn = parse_lsn(row["replay"])
            replica.lag_seconds = float(row["lag_seconds"])
            if not replica.healthy:
                log.info("replica %s is serving reads", replica.name)
            replica.healthy = replica.replay_lsn > 0
        if self.metrics is not None:
            self.metrics.replica_up.labels(replica.name).set(1 if replica.healthy else 0)
            lag_bytes = max(0, self.primary_lsn - replica.replay_lsn) if replica.healthy else 0
            self.metrics.replica_lag_bytes.labels(replica.name).set(lag_bytes)
            self.metrics.replica_lag_seconds.labels(replica.name).set(replica.lag_seconds)

    def _pick(self) -> Replica | None:
        if self._next is None:
            return None
        for _ in range(len(self.replicas)):
            replica = self.replicas[next(self._next)]
            if replica.healthy:
                return replica
        return None

    def _count(self, route: Route) -> Route:
        if self.metrics is not None:
            target = PRIMARY if route.target == PRIMARY else REPLICA
            self.metrics.db_routing.labels(target, route.reason).inc()
        return route

    def for_mutation(self) -> Route:
        """Mutations, and everything they read, run on the primary."""
        return self._count(self._routes[PRIMARY])

    async def for_query(self, user: str | None) -> Route:
        """A replica, unless this user wrote recently and the replica has not caught up."""
        replica = self._pick()
        if replica is None:
            return self._count(Route(self.primary, PRIMARY, "no_replica"))
        if user is not None:
            mark = await self.marks.recall(user)
            if mark is not None and mark > replica.replay_lsn:
                # The cached position may be a probe old: ask this replica once before giving up on it.
                try:
                    replica.replay_lsn = parse_lsn(
                        await replica.pool.fetchval(SELECT_REPLAY_LSN, timeout=1.0)
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    replica.healthy = False
                if mark > replica.replay_lsn:
                    return self._count(Route(self.primary, PRIMARY, "read_your_writes"))
        return self._count(Route(replica.pool, replica.name, "replica"))

    async def note_write(self, user: str | None) -> None:
        """After a committed mutation: remember where the primary's WAL stands for this user."""
        if user is None or not self.replicas:
            return
        try:
            lsn = parse_lsn(await self.primary.fetchval(SELECT_PRIMARY_LSN, timeout=2.0))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("could not read the WAL position after a write: %s", exc)
            return
        self.primary_lsn = max(self.primary_lsn, lsn)
        await self.marks.remember(user, lsn, self.window)


def user_key(role: str, user_id: int) -> str:
    """The read-your-writes key of a principal (ids are per role, so the role is part of it)."""
    return f"{role}:{user_id}"
