"""Score partitions created ahead while the server runs, by one instance at a time.

Start-up and `mlc-graph maintain` create partitions too, but a server that runs for months without a
restart or a cron would let scores fall into scores_default. Every instance runs this task; each round
takes a transaction-level advisory lock with `pg_try_advisory_xact_lock`, so while one instance works
the others skip that round instead of queueing DDL. The task uses its own short-lived connection, so
neither the DDL's locks nor session state touch the request pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from mlc_graph.platform.change_partitions import ensure_change_partitions
from mlc_graph.platform.config import Settings
from mlc_graph.platform.migrate import ensure_score_partitions

log = logging.getLogger(__name__)

UPKEEP_LOCK_ID = 0x4D4C43_5550  # "MLC" "UP": one round at a time across instances
AHEAD_MONTHS = 3  # what start-up and `mlc-graph maintain` create by default


class PartitionUpkeep:
    """A periodic task: `start()` it, `await stop()` it; `run_once()` is one round."""

    def __init__(self, dsn: str, interval: float, ahead: int = AHEAD_MONTHS) -> None:
        self.dsn = dsn
        self.interval = interval
        self.ahead = ahead
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[str] | None:
        """The partitions this round created, or None when another instance holds the round."""
        conn = await asyncpg.connect(self.dsn, timeout=5.0)
        try:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", UPKEEP_LOCK_ID):
                    return None
                # Moving a month's rows out of scores_default may outlast the read timeout of reads.
                await conn.execute("SET LOCAL statement_timeout = 0")
                created = await ensure_score_partitions(conn, ahead=self.ahead)
                # The delta-sync change log is partitioned by month too (kept MLC_SYNC_RETENTION_DAYS).
                return created + await ensure_change_partitions(conn)
        finally:
            await conn.close()

    async def _loop(self) -> None:
        while True:
            # Start-up has just ensured the partitions: the first round is one interval later.
            await asyncio.sleep(self.interval)
            try:
                created = await self.run_once()
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                # The database is down or busy: the next round tries again; maintain is the backstop.
                log.warning("partition upkeep failed: %s", exc)
            else:
                if created:
                    log.info("created score partitions: %s", ", ".join(created))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="partition-upkeep")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def cleanup_ctx(settings: Settings) -> Callable[[Any], AsyncIterator[None]]:
    """An aiohttp cleanup_ctx entry running the upkeep for the app's lifetime (off when the interval is 0)."""

    async def upkeep(_app: Any) -> AsyncIterator[None]:
        if settings.partition_upkeep_seconds <= 0:
            yield
            return
        task = PartitionUpkeep(settings.database_url, settings.partition_upkeep_seconds)
        task.start()
        try:
            yield
        finally:
            await task.stop()

    return upkeep
