"""Where the test PostgreSQL and Redis are, and the tables every test empties."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from mlc_graph.platform.migrate import migrate

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

TENANT_TABLES = (
    "student_badges, badges, best_scores, scores, assignments, games, levels, categories, "
    "students, teachers, organizations, sync_changes"
)


def url_for(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


async def create_database(prefix: str, *, migrated: bool = True) -> str:
    """A new, uniquely named database (`<prefix>_<pid>_<random>`), migrated unless told otherwise."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if migrated:
        conn = await asyncpg.connect(url_for(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def own_database(prefix: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """The URL of a database of the test's own, dropped afterwards (for tests that must not share one)."""
    name = await create_database(prefix, migrated=migrated)
    try:
        yield url_for(name)
    finally:
        await drop_database(name)
