"""Partitions for months whose scores already fell into scores_default, and the periodic upkeep.

Each test has its own database: the tests create and drop partitions, which the shared test database's
other partition tests count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from mlc_graph import cli
from mlc_graph.platform.migrate import partition_months
from mlc_graph.platform.partition_upkeep import UPKEEP_LOCK_ID, PartitionUpkeep
from tests.support import database
from tests.support.http import app_client, http_settings

WHERE_IS = "SELECT id, tableoid::regclass::text AS part FROM scores ORDER BY id"
INSERT_SCORE = (
    "INSERT INTO scores (org_id, student_id, game_id, score, stage, created_at) "
    "VALUES (1, 1, 1, $1, 'challenge', $2) RETURNING id"
)
PARTITION_EXISTS = "SELECT to_regclass($1) IS NOT NULL"


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    async with database.own_database("mlc_parts") as url:
        yield url


def _month(ahead: int) -> date:
    return partition_months(datetime.now(UTC).date(), back=0, ahead=ahead)[-1]


def _name(month: date) -> str:
    return f"scores_{month:%Y_%m}"


async def test_maintain_moves_the_months_default_rows_into_its_new_partition(
    own_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    in_ten, in_thirty = _month(10), _month(30)  # migrate created 3 months ahead: neither has a partition
    conn = await asyncpg.connect(own_database)
    try:
        early = await conn.fetchval(INSERT_SCORE, 100, datetime(in_ten.year, in_ten.month, 3, tzinfo=UTC))
        late = await conn.fetchval(
            INSERT_SCORE, 200, datetime(in_thirty.year, in_thirty.month, 5, tzinfo=UTC)
        )
        assert [tuple(r) for r in await conn.fetch(WHERE_IS)] == [
            (early, "scores_default"),
            (late, "scores_default"),
        ]
        monkeypatch.setenv("DATABASE_URL", own_database)
        assert await asyncio.to_thread(cli.main, ["maintain", "--ahead", "13"]) == 0
        assert _name(in_ten) in capsys.readouterr().out
        # The month's row moved, same id and values; the month still without a partition kept its row.
        assert [tuple(r) for r in await conn.fetch(WHERE_IS)] == [
            (early, _name(in_ten)),
            (late, "scores_default"),
        ]
        assert await conn.fetchval("SELECT score FROM scores WHERE id = $1", early) == 100
        # Moving a row between partitions is no change a client should sync: no tombstone, no new entry.
        assert await conn.fetchval("SELECT count(*) FROM sync_changes WHERE entity = 'Score'") == 2
        assert not await conn.fetchval("SELECT count(*) FROM sync_changes WHERE tombstone")
        indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = $1", _name(in_ten))
        assert indexes == 3  # primary key and the two scores indexes, as on partitions made directly
        # New rows of that month now land in it.
        newer = await conn.fetchval(INSERT_SCORE, 300, datetime(in_ten.year, in_ten.month, 20, tzinfo=UTC))
        assert await conn.fetchval(
            "SELECT tableoid::regclass::text FROM scores WHERE id = $1", newer
        ) == _name(in_ten)
    finally:
        await conn.close()


async def test_one_upkeep_round_at_a_time_across_instances(own_database: str) -> None:
    target = _name(_month(3))
    conn = await asyncpg.connect(own_database)
    try:
        await conn.execute(f"DROP TABLE {target}")
        upkeep = PartitionUpkeep(own_database, interval=3600)
        # Another instance's round holds the lock: this one skips and creates nothing.
        await conn.execute("SELECT pg_advisory_lock($1)", UPKEEP_LOCK_ID)
        assert await upkeep.run_once() is None
        assert not await conn.fetchval(PARTITION_EXISTS, target)
        await conn.execute("SELECT pg_advisory_unlock($1)", UPKEEP_LOCK_ID)
        # Two instances at once: the partition is created exactly once, and neither fails.
        rounds = await asyncio.gather(upkeep.run_once(), PartitionUpkeep(own_database, 3600).run_once())
        assert [r for r in rounds if r] == [[target]], rounds
        assert await conn.fetchval(PARTITION_EXISTS, target)
        assert await upkeep.run_once() == []
    finally:
        await conn.close()


async def _dropped_and_made_again(conn: asyncpg.Connection, target: str) -> None:
    """`target` exists (start-up made it); dropped while the server runs, the periodic task makes it again."""
    assert await conn.fetchval(PARTITION_EXISTS, target)
    await conn.execute(f"DROP TABLE {target}")
    for _ in range(400):
        if await conn.fetchval(PARTITION_EXISTS, target):
            break
        await asyncio.sleep(0.05)
    assert await conn.fetchval(PARTITION_EXISTS, target)


async def test_the_running_server_creates_partitions_ahead(own_database: str) -> None:
    target = _name(_month(2))
    conn = await asyncpg.connect(own_database)
    try:
        async with app_client(http_settings(own_database, partition_upkeep_seconds=0.05)):
            await _dropped_and_made_again(conn, target)
        # Stopped with the app.
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "partition-upkeep"]
    finally:
        await conn.close()


async def test_the_running_server_keeps_the_change_log_partitioned_ahead(own_database: str) -> None:
    today = datetime.now(UTC).date()
    month = today.month + 2
    target = f"sync_changes_{today.year + (month - 1) // 12}_{(month - 1) % 12 + 1:02d}"
    conn = await asyncpg.connect(own_database)
    try:
        async with app_client(http_settings(own_database, partition_upkeep_seconds=0.05)):
            await _dropped_and_made_again(conn, target)
    finally:
        await conn.close()
