"""Pool limits and statement timeouts end in a clear SERVICE_UNAVAILABLE, never a hang."""

from __future__ import annotations

import asyncpg
import pytest

from mlc_graph.config import PoolSettings
from mlc_graph.db import DatabaseUnavailableError, DbOptions, Executor, QueryStats, create_pool
from mlc_graph.errors import ServiceUnavailableError


async def test_an_exhausted_pool_refuses_after_the_acquire_timeout(database_url: str) -> None:
    pool = await create_pool(database_url, PoolSettings(min_size=1, max_size=1))
    try:
        db = Executor(pool, QueryStats(), options=DbOptions(acquire_timeout=0.05))
        async with pool.acquire():
            with pytest.raises(DatabaseUnavailableError) as caught:
                await db.fetchval("SELECT 1")
        assert isinstance(caught.value, ServiceUnavailableError)
        assert caught.value.extensions == {"code": "SERVICE_UNAVAILABLE"}
        assert await db.fetchval("SELECT 1") == 1  # and it works again once a connection is free
    finally:
        await pool.close()


async def test_an_unreachable_server_is_service_unavailable() -> None:
    pool = await create_pool("postgresql://postgres@127.0.0.1:1/none", PoolSettings(min_size=0, max_size=1))
    try:
        with pytest.raises(DatabaseUnavailableError):
            await Executor(pool, QueryStats()).fetchval("SELECT 1")
    finally:
        await pool.close()


async def test_reads_stop_at_the_read_timeout_reports_get_the_longer_one(database_url: str) -> None:
    settings = PoolSettings(min_size=1, max_size=2, read_statement_timeout_ms=50)
    pool = await create_pool(database_url, settings)
    try:
        db = Executor(pool, QueryStats(), options=DbOptions(report_timeout_ms=5000))
        with pytest.raises(DatabaseUnavailableError, match="timed out"):
            await db.fetchval("SELECT pg_sleep(0.5)")
        async with db.report() as report:
            assert await report.fetchval("SHOW statement_timeout") == "5s"
            await report.fetchval("SELECT pg_sleep(0.1)")
        # SET LOCAL ended with the transaction: the connection is back to the read timeout.
        assert await db.fetchval("SHOW statement_timeout") == "50ms"
    finally:
        await pool.close()


async def test_report_timeout_applies_inside_the_report(database_url: str) -> None:
    pool = await create_pool(database_url, PoolSettings(min_size=1, max_size=1))
    try:
        db = Executor(pool, QueryStats(), options=DbOptions(report_timeout_ms=50))
        with pytest.raises(DatabaseUnavailableError, match="timed out"):
            async with db.report() as report:
                await report.fetchval("SELECT pg_sleep(0.5)")
    finally:
        await pool.close()


async def test_statement_errors_stay_what_they_are(clean_db: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await Executor(clean_db, QueryStats()).fetch("SELECT * FROM no_such_table")
