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
    """Create any missing monthly partition of scores; returns the ones created."""
    today = today or datetime.now(UTC).date()
    existing = {r["relname"] for r in await conn.fetch(SELECT_PARTITIONS)}
    created: list[str] = []
    for start in partition_months(today, back, ahead):
        name = f"scores_{start:%Y_%m}"
        if name in existing:
            continue
        end = _month_start(start.year, start.month + 1)
        # DDL takes no bind parameters; the name and bounds are generated from dates above, never input.
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF scores "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
        created.append(name)
    return created
