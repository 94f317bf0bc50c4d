"""Monthly partitions of the sync change log: created ahead, dropped once older than the retention window.

`sync_changes_2026_11` holds the changes written in November 2026. A month is dropped when its end is
more than `retention_days` plus one day in the past: a sync token is honoured for `retention_days` after
the position it carries was reached, and the extra day covers a write transaction that began (and so
stamped `changed_at`) before that moment but committed after it. Rows that fell into the default
partition (maintenance fell behind) are moved into their month when it is created, in one transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg

PARENT = "sync_changes"
SELECT_CHANGE_PARTITIONS = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'sync_changes' AND c.relname <> 'sync_changes_default'
"""
DELETE_EXPIRED_DEFAULT_ROWS = "DELETE FROM sync_changes_default WHERE changed_at < $1"
MARGIN = timedelta(days=1)


def _month(year: int, month: int) -> date:
    year += (month - 1) // 12
    return date(year, (month - 1) % 12 + 1, 1)


def _name(start: date) -> str:
    return f"{PARENT}_{start:%Y_%m}"


def _start_of(name: str) -> date | None:
    """The month a partition name stands for; None for a name this module did not make."""
    try:
        return datetime.strptime(name.removeprefix(f"{PARENT}_"), "%Y_%m").date()
    except ValueError:
        return None


async def _existing(conn: asyncpg.Connection) -> set[str]:
    return {r["relname"] for r in await conn.fetch(SELECT_CHANGE_PARTITIONS)}


async def ensure_change_partitions(
    conn: asyncpg.Connection, today: date | None = None, ahead: int = 3
) -> list[str]:
    """Create this month's partition, last month's and `ahead` more; returns the ones created."""
    today = today or datetime.now(UTC).date()
    existing = await _existing(conn)
    created: list[str] = []
    for offset in range(-1, ahead + 1):
        start = _month(today.year, today.month + offset)
        name = _name(start)
        if name in existing:
            continue
        end = _month(start.year, start.month + 1)
        # DDL takes no bind parameters: the name and bounds are generated from dates here, never input.
        bounds = f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        async with conn.transaction():
            # Built beside the log, filled with what the default partition caught of its month, then
            # attached: attaching checks the default holds no row of the range, so the move comes first.
            await conn.execute(
                f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            await conn.execute(
                f"WITH moved AS (DELETE FROM {PARENT}_default WHERE changed_at >= '{start.isoformat()}' "  # noqa: S608
                f"AND changed_at < '{end.isoformat()}' RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            )
            await conn.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {bounds}")
        created.append(name)
    return created


async def drop_expired_change_partitions(
    conn: asyncpg.Connection, retention_days: int, now: datetime | None = None
) -> list[str]:
    """Drop every month that ended before the retention window (plus the margin); returns them."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days) - MARGIN
    dropped: list[str] = []
    for name in sorted(await _existing(conn)):
        start = _start_of(name)
        if start is None:
            continue
        end = _month(start.year, start.month + 1)
        if datetime(end.year, end.month, end.day, tzinfo=UTC) <= cutoff:
            await conn.execute(f"DROP TABLE {name}")
            dropped.append(name)
    await conn.execute(DELETE_EXPIRED_DEFAULT_ROWS, cutoff)
    return dropped
