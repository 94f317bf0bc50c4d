"""Shared fixtures: one fresh, migrated database per test run (dropped at the end), emptied between tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from mlc_graph.platform.config import PoolSettings
from mlc_graph.platform.db import Executor, QueryStats, create_pool
from tests.support.database import TENANT_TABLES, create_database, drop_database, url_for


@pytest.fixture(scope="session")
def database_name() -> Iterator[str]:
    """A uniquely named database for this run: created here, dropped when the run ends."""
    import asyncio

    name = asyncio.run(create_database("mlc_test"))
    yield name
    asyncio.run(drop_database(name))


@pytest.fixture(scope="session")
def database_url(database_name: str) -> str:
    return url_for(database_name)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # Every connection opened up front: a query with many batches opens several at once, and on a
    # loaded 2-core machine opening them on demand can outlast the acquire timeout.
    pool = await create_pool(database_url, PoolSettings(min_size=10, max_size=10))
    yield pool
    await pool.close()


@pytest.fixture
async def clean_db(pool: asyncpg.Pool) -> asyncpg.Pool:
    """Empty every table (and restart ids) so each test starts from nothing it did not write."""
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    return pool


@pytest.fixture
def stats() -> QueryStats:
    return QueryStats(keep_texts=True)


@pytest.fixture
def executor(clean_db: asyncpg.Pool, stats: QueryStats) -> Executor:
    return Executor(clean_db, stats)
