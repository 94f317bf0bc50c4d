"""The database boundary: pools, and the per-request executor every SQL statement goes through.

Every statement is counted (tests assert the counts, development responses show them) and timed.
Pool connections never carry session state (no SET, LISTEN or session advisory locks on them), which
is what makes the no-op pool reset below safe: asyncpg's default reset costs four statements per
release. Per-category statement timeouts use SET LOCAL inside a transaction, which ends with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from mlc_graph.config import PoolSettings


class DatabaseUnavailableError(RuntimeError):
    """No connection could be had in time (pool exhausted or server down)."""


@dataclass(slots=True)
class QueryStats:
    """What one request (or one test) asked of the database."""

    statements: int = 0
    seconds: float = 0.0
    texts: list[str] = field(default_factory=list)
    keep_texts: bool = False

    def record(self, sql: str, elapsed: float) -> None:
        self.statements += 1
        self.seconds += elapsed
        if self.keep_texts:
            self.texts.append(sql)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset that keeps the session: see the module docstring for why this is safe."""


async def create_pool(dsn: str, settings: PoolSettings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=settings.min_size,
        max_size=settings.max_size,
        max_queries=settings.max_queries,
        max_inactive_connection_lifetime=settings.max_inactive_lifetime,
        reset=_keep_session,
        server_settings={
            "statement_timeout": str(settings.read_statement_timeout_ms),
            "application_name": "mlc-graph",
        },
    )


class Executor:
    """Runs SQL for one request on a pool (or one pinned connection inside a transaction)."""

    __slots__ = ("_acquire_timeout", "_conn", "_pool", "stats")

    def __init__(
        self,
        pool: asyncpg.Pool,
        stats: QueryStats,
        acquire_timeout: float = 5.0,
        conn: asyncpg.Connection | None = None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._acquire_timeout = acquire_timeout
        self.stats = stats

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        try:
            conn = await self._pool.acquire(timeout=self._acquire_timeout)
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
            raise DatabaseUnavailableError(str(exc)) from exc
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            started = time.perf_counter()
            try:
                return await conn.fetch(sql, *args)
            finally:
                self.stats.record(sql, time.perf_counter() - started)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self._connection() as conn:
            started = time.perf_counter()
            try:
                return await conn.fetchrow(sql, *args)
            finally:
                self.stats.record(sql, time.perf_counter() - started)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            started = time.perf_counter()
            try:
                return await conn.fetchval(sql, *args)
            finally:
                self.stats.record(sql, time.perf_counter() - started)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self._connection() as conn:
            started = time.perf_counter()
            try:
                return await conn.execute(sql, *args)
            finally:
                self.stats.record(sql, time.perf_counter() - started)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        async with self._connection() as conn:
            started = time.perf_counter()
            try:
                await conn.executemany(sql, args)
            finally:
                self.stats.record(sql, time.perf_counter() - started)

    @asynccontextmanager
    async def transaction(self, statement_timeout_ms: int | None = None) -> AsyncIterator[Executor]:
        """One transaction on one connection; statements inside count toward the same stats."""
        if self._conn is not None:
            # Already pinned: nest as a savepoint so an inner failure can be handled by the caller.
            async with self._conn.transaction():
                yield self
            return
        async with self._connection() as conn, conn.transaction():
            pinned = Executor(self._pool, self.stats, self._acquire_timeout, conn)
            if statement_timeout_ms is not None:
                await pinned.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
            yield pinned
