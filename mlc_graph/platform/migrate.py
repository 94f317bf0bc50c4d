"""Applies the SQL files in migrations/ once each, in name order, recorded in schema_migrations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources

import asyncpg

from mlc_graph.platform.change_partitions import ensure_change_partitions

# One lock id for the whole project: concurrent `migrate` runs (several instances starting together)
# serialise on it instead of racing on CREATE TABLE.
_ADVISORY_LOCK_ID = 0x4D4C43_4D4947

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT name, checksum FROM schema_migrations"
INSERT_APPLIED = "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)"
SELECT_PARTITIONS = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'scores'
"""


# Creating a month's partition (moving its rows out of scores_default) by one process at a time.
PARTITION_LOCK_ID = 0x4D4C43_5041
PARTITION_EXISTS = "SELECT to_regclass($1) IS NOT NULL"
# SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE every INSERT takes: while a month's rows move,
# no new row can land in scores_default (reads of it go on).
LOCK_DEFAULT_PARTITION = "LOCK TABLE scores_default IN SHARE ROW EXCLUSIVE MODE"
MOVE_FROM_DEFAULT = """
WITH moved AS (
    DELETE FROM scores_default
    WHERE created_at >= $1::text::timestamptz AND created_at < $2::text::timestamptz
    RETURNING *
)
INSERT INTO {name} SELECT * FROM moved
"""


class MigrationError(RuntimeError):
    """An applied migration was edited afterwards; refuse rather than guess."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    files = resources.files("mlc_graph.platform.migrations")
    found = [
        Migration(entry.name, entry.read_text(encoding="utf-8"))
        for entry in files.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.name)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date)."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_ID)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        applied = {r["name"]: r["checksum"] for r in await conn.fetch(SELECT_APPLIED)}
        for migration in load_migrations():
            known = applied.get(migration.name)
            if known is not None:
                if known != migration.checksum:
                    raise MigrationError(f"migration {migration.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.name, migration.checksum)
            applied_now.append(migration.name)
        await ensure_score_partitions(conn)
        await ensure_change_partitions(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_ID)
    return applied_now


def _month_start(year: int, month: int) -> date:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, 1)


def partition_months(today: date, back: int = 24, ahead: int = 3) -> list[date]:
    """First days of the months that need a scores partition: `back` months of history, `ahead` future."""
    return [_month_start(today.year, today.month + offset) for offset in range(-back, ahead + 1)]


async def ensure_score_partitions(
    conn: asyncpg.Connection, today: date | None = None, back: int = 24, ahead: int = 3
) -> list[str]:
    """Create any missing monthly partition of scores, each in its own transaction; returns the created.

    Safe to run from several places at once (start-up, `mlc-graph maintain`, the periodic upkeep):
    each month is created under PARTITION_LOCK_ID and re-checked first.
    """
    today = today or datetime.now(UTC).date()
    existing = {r["relname"] for r in await conn.fetch(SELECT_PARTITIONS)}
    created: list[str] = []
    for start in partition_months(today, back, ahead):
        name = f"scores_{start:%Y_%m}"
        if name not in existing and await _create_partition(conn, start):
            created.append(name)
    return created


async def _create_partition(conn: asyncpg.Connection, start: date) -> bool:
    """One month's partition, with the rows of that month the default partition caught moved into it.

    A score dated in a month without a partition lands in scores_default; `CREATE TABLE ... PARTITION
    OF` would then fail on that month for ever (the new bounds would cover rows of the default). So the
    table is made standalone, the month's rows are moved into it and it is attached, in one transaction
    that keeps new rows out of scores_default meanwhile: all of it or nothing.
    """
    name = f"scores_{start:%Y_%m}"
    end = _month_start(start.year, start.month + 1)
    # DDL takes no bind parameters; the name and bounds are generated from dates, never from input.
    bounds = f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
        if await conn.fetchval(PARTITION_EXISTS, name):
            return False  # another process created it while we waited for the lock
        await conn.execute(LOCK_DEFAULT_PARTITION)
        await conn.execute(f"CREATE TABLE {name} (LIKE scores INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        # Bounds as text cast in this session, exactly as the partition bounds below are read.
        await conn.execute(MOVE_FROM_DEFAULT.format(name=name), start.isoformat(), end.isoformat())
        # ATTACH builds the partition's copy of every scores index and checks the bounds against the rows.
        await conn.execute(f"ALTER TABLE scores ATTACH PARTITION {name} FOR VALUES {bounds}")
    return True
