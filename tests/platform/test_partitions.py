"""`mlc-graph maintain` creates future score partitions (with every index); prepared statements prune too.

tests/test_migrate.py covers the partitions migrate creates and plan-time pruning with literal ranges;
this covers the maintenance command and run-time pruning of the generic plans prepared statements get.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
import pytest

from mlc_graph import cli
from mlc_graph.platform.migrate import ensure_score_partitions, partition_months

SELECT_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'scores'::regclass
"""
SELECT_PARTITION_INDEXES = "SELECT indexdef FROM pg_indexes WHERE tablename = $1"
# The shape of a Student.scores page restricted to a time window (a report or export): prunable.
SELECT_WINDOW = """
SELECT id, score FROM scores
WHERE student_id = $1 AND created_at >= $2 AND created_at < $3
ORDER BY created_at DESC LIMIT 10
"""


def _partition(month: date) -> str:
    return f"scores_{month:%Y_%m}"


def test_maintain_creates_months_ahead_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["maintain", "--ahead", "8"]) == 0
    first = capsys.readouterr().out
    assert cli.main(["maintain", "--ahead", "8"]) == 0
    assert capsys.readouterr().out.strip() == "all partitions present"
    farthest = partition_months(datetime.now(UTC).date(), back=0, ahead=8)[-1]
    assert _partition(farthest) in first


async def test_new_partitions_carry_every_scores_index(database_url: str) -> None:
    farthest = partition_months(datetime.now(UTC).date(), back=0, ahead=8)[-1]
    conn = await asyncpg.connect(database_url)
    try:
        await ensure_score_partitions(
            conn, ahead=8
        )  # what `maintain --ahead 8` does (this test may run alone)
        rows = await conn.fetch(SELECT_PARTITION_INDEXES, _partition(farthest))
    finally:
        await conn.close()
    indexes = " ".join(r["indexdef"] for r in rows)
    for columns in (
        "(id, created_at)",
        "(student_id, game_id, created_at DESC)",
        "(student_id, created_at DESC, id DESC)",
    ):
        assert columns in indexes


async def test_prepared_statements_prune_at_run_time(database_url: str) -> None:
    # Its own connection: PREPARE is session state, which pool connections never carry.
    conn = await asyncpg.connect(database_url)
    try:
        # The generic plan a prepared statement gets after five runs has parameters for bounds, so the
        # partitions must be pruned when the plan runs, not when it is made.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE score_window (bigint, timestamptz, timestamptz) AS {SELECT_WINDOW}")
        rows = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
            "EXECUTE score_window (1, '2026-03-01T00:00:00Z', '2026-04-01T00:00:00Z')"
        )
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'scores'::regclass"
        )
    finally:
        await conn.close()
    plan = "\n".join(r[0] for r in rows)
    removed = int(plan.split("Subplans Removed: ")[1].split()[0])
    assert removed == partitions - 1, plan
    scanned = [line.split(" on ")[1].split()[0] for line in plan.splitlines() if " on scores_" in line]
    assert scanned == ["scores_2026_03"], plan
