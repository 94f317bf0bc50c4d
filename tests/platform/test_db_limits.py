"""Pool limits and statement timeouts end in a clear SERVICE_UNAVAILABLE, never a hang."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from mlc_graph.platform.config import PoolSettings
from mlc_graph.platform.db import DbOptions, Executor, QueryStats, create_pool
from mlc_graph.platform.errors import DatabaseUnavailableError, ServiceUnavailableError
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import app_client, bearer, http_settings

SLEEPING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND query LIKE 'SELECT pg_sleep(1)%'
"""


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


async def test_report_requests_get_the_report_timeout_on_every_statement(clean_db: asyncpg.Pool) -> None:
    stats = QueryStats()
    db = Executor(clean_db, stats, options=DbOptions(report_timeout_ms=30000))
    assert await db.fetchval("SHOW statement_timeout") == "5s"
    db.use_report_timeout()
    assert await db.fetchval("SHOW statement_timeout") == "30s"
    assert stats.statements == 2  # the SET LOCAL is plumbing, not the request's SQL
    # Nothing leaks into the pooled session: a plain executor on the same pool still has the read timeout.
    assert await Executor(clean_db, QueryStats()).fetchval("SHOW statement_timeout") == "5s"


async def test_class_progress_over_http_runs_with_the_report_timeout(
    database_url: str, pool: asyncpg.Pool
) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    await factories.make_students(pool, org, teacher_id, 2)
    # Reads may wait a minute, reports 200 ms. With the students table locked the report waits for the
    # lock until a timeout cancels it: answering at all (not hanging) shows the report timeout applied.
    limits = PoolSettings(
        min_size=1, max_size=2, read_statement_timeout_ms=60_000, report_statement_timeout_ms=200
    )
    teacher = encode_global_id("Teacher", teacher_id)
    query = f'{{ classProgress(teacherId: "{teacher}") {{ students {{ averageScore }} }} }}'
    lock = await asyncpg.connect(database_url)
    try:
        async with app_client(http_settings(database_url, pool=limits)) as client, lock.transaction():
            await lock.execute("LOCK TABLE assignments IN ACCESS EXCLUSIVE MODE")
            response = await asyncio.wait_for(
                client.post("/graphql", json={"query": query}, headers=bearer("teacher", teacher_id, org)),
                30,
            )
            body = await response.json()
    finally:
        await lock.close()
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body


async def test_a_connection_closed_under_the_executor_is_service_unavailable(
    database_url: str, clean_db: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.close()
    with pytest.raises(DatabaseUnavailableError):
        await Executor(clean_db, QueryStats(), conn=conn).fetchval("SELECT 1")


async def test_every_statement_gives_its_connection_back_whatever_became_of_it(database_url: str) -> None:
    """With one connection in the pool, a statement that kept it would leave the next one waiting out
    the acquire timeout: plain and report statements, answered, refused, timed out and cancelled."""
    settings = PoolSettings(min_size=1, max_size=1, read_statement_timeout_ms=300)
    pool = await create_pool(database_url, settings)
    watch = await asyncpg.connect(database_url)
    try:
        stats = QueryStats()
        db = Executor(pool, stats, options=DbOptions(acquire_timeout=2.0, report_timeout_ms=600))
        for report in (False, True):
            if report:
                db.use_report_timeout()
            assert await db.fetchval("SHOW statement_timeout") == ("600ms" if report else "300ms")
            with pytest.raises(asyncpg.UndefinedTableError):
                await db.fetch("SELECT * FROM no_such_table")
            with pytest.raises(DatabaseUnavailableError, match="timed out"):
                await db.fetchval("SELECT pg_sleep(1)")
            running = asyncio.create_task(db.fetchval("SELECT pg_sleep(1)"))
            for _ in range(400):  # cancelled in the statement, not before it
                if await watch.fetchval(SLEEPING):
                    break
                await asyncio.sleep(0.005)
            assert await watch.fetchval(SLEEPING) == 1
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            assert pool.get_idle_size() == 1
        assert stats.statements == 8  # the report's SET LOCAL is not one of them
        # The report timeout ended with each statement's transaction: the session has the read one.
        assert await Executor(pool, QueryStats()).fetchval("SHOW statement_timeout") == "300ms"
    finally:
        await watch.close()
        pool.terminate()  # not close(): it would wait for ever for a connection a statement kept


async def test_no_free_connection_is_said_with_the_acquire_timeout(database_url: str) -> None:
    pool = await create_pool(database_url, PoolSettings(min_size=1, max_size=1))
    try:
        db = Executor(pool, QueryStats(), options=DbOptions(acquire_timeout=0.05))
        async with pool.acquire():
            with pytest.raises(
                DatabaseUnavailableError, match=r"^database unavailable: no connection within 0\.05s$"
            ):
                await db.fetchval("SELECT 1")
            db.use_report_timeout()
            with pytest.raises(DatabaseUnavailableError, match=r"no connection within 0\.05s"):
                await db.fetchval("SELECT 1")
    finally:
        await pool.close()
