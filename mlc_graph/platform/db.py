"""The database boundary: pools, and the per-request executor every SQL statement goes through.

Every statement is counted (tests assert the counts, development responses show them) and timed.
Pool connections never carry session state (no SET, LISTEN or session advisory locks on them), which
is what makes the no-op pool reset below safe: asyncpg's default reset costs four statements per
release. Per-category statement timeouts use SET LOCAL inside a transaction, which ends with it: the
pool's sessions carry the read timeout, `transaction()` (the write path) the write timeout, `report()`
the report timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mlc_graph.platform.config import PoolSettings
from mlc_graph.platform.db_errors import UNSTORABLE_TEXT, unstorable_text
from mlc_graph.platform.errors import DatabaseUnavailableError
from mlc_graph.platform.sqlcomment import comment_for, log_slow_query

log = logging.getLogger(__name__)

# statement_timeout in milliseconds whatever unit it was set in ('5s', '5000').
SELECT_STATEMENT_TIMEOUT_MS = "SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'"

# Failures that mean "the database is not there right now" rather than "this statement is wrong":
# they become SERVICE_UNAVAILABLE (HTTP 503) instead of a masked internal error.
_UNAVAILABLE = (
    TimeoutError,
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.PostgresConnectionError,
)

# What a pool's acquire may raise when no connection is to be had (InterfaceError: the pool is closing).
_ACQUIRE_FAILURES = (*_UNAVAILABLE, asyncpg.InterfaceError)

# What asyncpg raises when the connection closed under a statement (a restart mid-query): unavailable only
# when the connection is in fact closed; otherwise a bug, and masked as one.
_CLOSED_UNDERNEATH = (asyncpg.InterfaceError, asyncpg.InternalClientError)


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


@dataclass(frozen=True, slots=True)
class DbOptions:
    """Per-app executor behaviour: timeouts, the slow-query threshold and hook, the SQL comment mode."""

    acquire_timeout: float = 5.0
    report_timeout_ms: int = 30000
    # Every transaction() is a write: it waits on row locks other writes hold, which a read never does.
    write_timeout_ms: int = 15000
    slow_seconds: float = 1.0
    comment_mode: str = "operation"
    # Called with the operation name for each slow statement (the metrics counter).
    on_slow: Callable[[str | None], None] | None = None
    pool_name: str = "primary"
    # Called with every statement and its duration (tracing's SQL spans); None when tracing is off.
    on_statement: Callable[[str, float], None] | None = None


DEFAULT_OPTIONS = DbOptions()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset that keeps the session: see the module docstring for why this is safe."""


async def create_pool(dsn: str, settings: PoolSettings, application_name: str = "mlc-graph") -> asyncpg.Pool:
    """A pool per the spec's limits (statement_cache_size 0 behind PgBouncer < 1.21 in transaction mode)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.min_size,
        max_size=settings.max_size,
        max_queries=settings.max_queries,
        max_inactive_connection_lifetime=settings.max_inactive_lifetime,
        reset=_keep_session,
        statement_cache_size=settings.statement_cache_size,
        server_settings={
            # PgBouncer drops this startup parameter (ignore_startup_parameters): there the read
            # timeout comes from its connect_query or the role, which check_read_timeout verifies.
            "statement_timeout": str(settings.read_statement_timeout_ms),
            "application_name": application_name,
        },
    )
    if settings.min_size > 0:
        await check_read_timeout(pool, settings.read_statement_timeout_ms)
    return pool


async def check_read_timeout(pool: asyncpg.Pool, expected_ms: int) -> bool:
    """Warn at start-up when sessions miss MLC_READ_TIMEOUT_MS (behind a misconfigured PgBouncer)."""
    timeout = await pool.fetchval(SELECT_STATEMENT_TIMEOUT_MS)
    if int(timeout) == expected_ms:
        return True
    log.warning(
        "sessions run with statement_timeout %s ms, not MLC_READ_TIMEOUT_MS=%d: behind PgBouncer set it in "
        "connect_query or on the role (docs/OPERATIONS.md, Behind PgBouncer)",
        timeout,
        expected_ms,
    )
    return False


class Executor:
    """Runs SQL for one request on a pool (or one pinned connection inside a transaction)."""

    __slots__ = (
        "_acquire_timeout",
        "_comment",
        "_conn",
        "_options",
        "_pool",
        "_report_timeout",
        "operation",
        "request_id",
        "stats",
    )

    def __init__(
        self,
        pool: asyncpg.Pool,
        stats: QueryStats,
        acquire_timeout: float | None = None,
        conn: asyncpg.Connection | None = None,
        options: DbOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._options = options
        self._acquire_timeout = options.acquire_timeout if acquire_timeout is None else acquire_timeout
        self._comment = ""
        # Set for report requests: each statement then runs in a transaction with the report timeout.
        self._report_timeout: str | None = None
        self.operation: str | None = None
        self.request_id = ""
        self.stats = stats

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def pool_name(self) -> str:
        return self._options.pool_name

    def configure(self, options: DbOptions, pool: asyncpg.Pool | None = None) -> None:
        """Apply the app's options (and another pool, e.g. a replica) before the request runs any SQL."""
        self._options = options
        self._acquire_timeout = options.acquire_timeout
        if pool is not None:
            self._pool = pool

    def tag(self, operation: str | None, request_id: str) -> None:
        """Name the request in every statement's SQL comment and in the slow-query log."""
        self.operation = operation
        self.request_id = request_id
        self._comment = comment_for(self._options.comment_mode, operation, request_id)

    def use_report_timeout(self) -> None:
        """Give this request's statements the report timeout (30 s) instead of the read one (5 s)."""
        # SET takes no bind parameters; the value is an int from settings.
        self._report_timeout = f"SET LOCAL statement_timeout = {int(self._options.report_timeout_ms)}"

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        try:
            conn = await self._pool.acquire(timeout=self._acquire_timeout)
        except _ACQUIRE_FAILURES as exc:
            raise _no_connection(self._acquire_timeout) from exc
        try:
            # The pool hands out a proxy that forwards every Connection method; type it as what it proxies.
            if self._report_timeout is None:
                yield cast(asyncpg.Connection, conn)
            else:
                # SET LOCAL ends with the transaction, so the pooled session keeps the read timeout.
                async with conn.transaction():
                    await conn.execute(self._report_timeout)
                    yield cast(asyncpg.Connection, conn)
        finally:
            await self._pool.release(conn)

    def _finish(self, sql: str, args: Sequence[Any], elapsed: float) -> None:
        self.stats.record(sql, elapsed)
        if self._options.on_statement is not None:
            self._options.on_statement(sql, elapsed)
        if elapsed >= self._options.slow_seconds:
            log_slow_query(sql, len(args), elapsed, self.operation, self.request_id)
            if self._options.on_slow is not None:
                self._options.on_slow(self.operation)

    async def _run(self, method: str, sql: str, args: Sequence[Any], logged: Sequence[Any]) -> Any:
        """Call one asyncpg method on a connection, counted, timed and with driver failures classified."""
        # The connection's acquire and release written out rather than `async with self._connection()`:
        # a generator-based context manager per statement was several calls and frames each (issue 11).
        conn = self._conn
        if conn is None and self._report_timeout is not None:
            # A report's statement, in its SET LOCAL transaction: rare, so the context manager is fine here.
            async with self._connection() as reporting:
                return await self._pinned(reporting)._run(method, sql, args, logged)
        proxy: PoolConnectionProxy[Any] | None = None
        if conn is None:
            try:
                proxy = await self._pool.acquire(timeout=self._acquire_timeout)
            except _ACQUIRE_FAILURES as exc:
                raise _no_connection(self._acquire_timeout) from exc
            # The pool hands out a proxy that forwards every Connection method; typed as what it proxies.
            conn = cast(asyncpg.Connection, proxy)
        try:
            started = time.perf_counter()
            try:
                return await getattr(conn, method)(sql + self._comment, *args)
            except _UNAVAILABLE as exc:
                raise _unavailable(exc) from exc
            except asyncpg.QueryCanceledError as exc:
                raise _timed_out(exc) from exc
            except UNSTORABLE_TEXT as exc:
                # A client's string (a read argument, a cursor part) PostgreSQL text cannot hold.
                raise unstorable_text(exc) from exc
            except _CLOSED_UNDERNEATH as exc:
                # "connection is closed": the server went away between acquire and query.
                if conn.is_closed():
                    raise _unavailable(exc) from exc
                raise
            finally:
                self._finish(sql, logged, time.perf_counter() - started)
        finally:
            if proxy is not None:
                await self._pool.release(proxy)

    def _pinned(self, conn: asyncpg.Connection) -> Executor:
        """An executor on `conn` alone, naming its statements as this one does."""
        pinned = Executor(self._pool, self.stats, self._acquire_timeout, conn, self._options)
        pinned.operation, pinned.request_id, pinned._comment = self.operation, self.request_id, self._comment
        return pinned

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", sql, args, args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", sql, args, args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, args, args)

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await self._run("execute", sql, args, args)
        return status

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._run("executemany", sql, (args,), ())

    @asynccontextmanager
    async def transaction(self, statement_timeout_ms: int | None = None) -> AsyncIterator[Executor]:
        """One transaction on one connection; statements inside count toward the same stats.

        Its statements get `statement_timeout_ms` when given (reports), else the write timeout.
        """
        if self._conn is not None:
            # Already pinned: nest as a savepoint so an inner failure can be handled by the caller.
            async with self._conn.transaction():
                yield self
            return
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    pinned = self._pinned(conn)
                    if statement_timeout_ms is not None:
                        # SET takes no bind parameters; the value is an int we format ourselves.
                        await pinned.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
                    else:
                        # Plumbing, not the request's SQL: uncounted, like the report timeout of reads.
                        await conn.execute(
                            f"SET LOCAL statement_timeout = {int(self._options.write_timeout_ms)}"
                        )
                    yield pinned
            except _UNAVAILABLE as exc:
                # BEGIN or COMMIT met a server that went away (statements inside map their own).
                raise _unavailable(exc) from exc
            except _CLOSED_UNDERNEATH as exc:
                if conn.is_closed():
                    raise _unavailable(exc) from exc
                raise

    def report(self) -> AbstractAsyncContextManager[Executor]:
        """A transaction with the report statement timeout (30 s by default, not the 5 s of reads)."""
        return self.transaction(self._options.report_timeout_ms)


def _no_connection(timeout: float) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"database unavailable: no connection within {timeout:g}s")


def _unavailable(exc: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"database unavailable: {type(exc).__name__}")


def _timed_out(exc: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError("database statement timed out")
