"""Seeding: the documented demo counts, determinism, consistency of derived rows, COPY into real partitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest

from mlc_graph.platform.config import Settings
from mlc_graph.tools.seed import (
    DEMO,
    TABLES,
    TRUNCATE_ALL,
    DatabaseNotEmptyError,
    Scale,
    SeedIntegrityError,
    anchor_for,
    seed,
    seed_command,
    skip_row_triggers,
    verify_foreign_keys,
)

# Today's anchor, fixed once for the run: the seeds compared below must share it. (A date far from
# today would make the seed add partitions the run's shared database does not otherwise have.)
ANCHOR = anchor_for(datetime.now(UTC).date())

# The demo counts documented in docs/DATA.md; they do not depend on the day the seed runs.
DEMO_COUNTS = {
    "organizations": 1,
    "teachers": 3,
    "students": 60,
    "categories": 8,
    "levels": 5,
    "games": 200,
    "assignments": 600,
    "scores": 6_000,
    "best_scores": 775,
    "badges": 12,
    "student_badges": 127,
}
TINY = Scale(
    name="tiny",
    organizations=3,
    teachers_per_org=2,
    students_per_teacher=7,
    games=40,
    assignments_per_student=4,
    scores=900,
    months=14,
)

# An independent restatement of best_scores (max, then the earliest time it was reached), compared
# row for row in both directions.
BEST_SCORES_MISMATCHES = """
WITH top AS (
    SELECT game_id, student_id, max(score) AS score FROM scores WHERE stage = 'challenge' GROUP BY 1, 2
), expected AS (
    SELECT top.game_id, top.student_id, st.org_id, st.teacher_id, top.score, min(sc.created_at) AS achieved_at
    FROM top
    JOIN scores sc ON sc.game_id = top.game_id AND sc.student_id = top.student_id
                  AND sc.stage = 'challenge' AND sc.score = top.score
    JOIN students st ON st.id = top.student_id
    GROUP BY 1, 2, 3, 4, 5
), actual AS (
    SELECT game_id, student_id, org_id, teacher_id, score, achieved_at FROM best_scores
)
SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM actual) AS missing)
     + (SELECT count(*) FROM (SELECT * FROM actual EXCEPT SELECT * FROM expected) AS extra)
"""
# Tenant-owned rows must carry the organization of the student (or teacher) they belong to.
TENANT_MISMATCHES = """
SELECT (SELECT count(*) FROM students s JOIN teachers t ON t.id = s.teacher_id WHERE s.org_id <> t.org_id)
     + (SELECT count(*) FROM assignments a JOIN students s ON s.id = a.student_id
        WHERE a.org_id <> s.org_id OR a.teacher_id <> s.teacher_id)
     + (SELECT count(*) FROM scores x JOIN students s ON s.id = x.student_id WHERE x.org_id <> s.org_id)
     + (SELECT count(*) FROM student_badges b JOIN students s ON s.id = b.student_id WHERE b.org_id <> s.org_id)
"""


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}


async def _checksums(conn: asyncpg.Connection) -> dict[str, str]:
    return {
        table: await conn.fetchval(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t")
        for table in TABLES
    }


@pytest.fixture(scope="module")
async def scratch_url(database_url: str) -> AsyncIterator[str]:
    """The run's database; every test here reseeds it with reset=True, so order does not matter.

    Emptied afterwards, so seeded rows reach no other test (they start from TRUNCATE too).
    """
    yield database_url
    async with connect(database_url) as conn:
        await conn.execute(TRUNCATE_ALL)


async def test_demo_seed_has_the_documented_counts_and_consistent_rows(scratch_url: str) -> None:
    async with connect(scratch_url) as conn:
        report = await seed(conn, DEMO, reset=True, progress=False)
        assert await table_counts(conn) == DEMO_COUNTS
        assert {t: report.rows(t) for t in DEMO_COUNTS} == DEMO_COUNTS
        assert await conn.fetchval("SELECT count(*) FROM students WHERE status = 'inactive'") == 3
        assert await conn.fetchval("SELECT count(DISTINCT stage) FROM scores") == 2
        assert await conn.fetchval("SELECT count(DISTINCT status) FROM assignments") == 3
        assert await conn.fetchval("SELECT count(DISTINCT status) FROM games") == 3
        assert await conn.fetchval("SELECT tier FROM organizations") == "ENSEMBLE"
        assert await conn.fetchval("SELECT seat_count >= 60 FROM organizations")
        # Every student has ten assignments; every active student has played.
        assert (
            await conn.fetchval("SELECT count(*) FROM assignments GROUP BY student_id HAVING count(*) <> 10")
            is None
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM students WHERE status = 'active' AND last_active_at IS NULL"
            )
            == 0
        )
        assert await conn.fetchval(BEST_SCORES_MISMATCHES) == 0
        assert await conn.fetchval(TENANT_MISMATCHES) == 0
        assert await conn.fetchval("SELECT count(*) FROM scores_default") == 0
        # Six months of history land in (at least) six monthly partitions.
        partitions = await conn.fetchval("SELECT count(DISTINCT tableoid) FROM scores")
        assert partitions >= 6


async def test_same_anchor_gives_identical_rows_and_refuses_non_empty(scratch_url: str) -> None:
    async with connect(scratch_url) as conn:
        await seed(conn, DEMO, anchor=ANCHOR, reset=True, progress=False)
        first = await _checksums(conn)
        with pytest.raises(DatabaseNotEmptyError):
            await seed(conn, DEMO, anchor=ANCHOR, progress=False)
        assert await _checksums(conn) == first
        await seed(conn, DEMO, anchor=ANCHOR, reset=True, progress=False)
        second = await _checksums(conn)
    assert all(first.values())
    assert first == second


async def test_custom_scale_spans_organizations_and_partitions_and_ids_continue(scratch_url: str) -> None:
    async with connect(scratch_url) as conn:
        report = await seed(conn, TINY, anchor=ANCHOR, reset=True, progress=False)
        counts = await table_counts(conn)
        assert counts["organizations"] == 3
        assert counts["teachers"] == 6
        assert counts["students"] == 42
        assert counts["assignments"] == 42 * 4
        assert counts["scores"] == 900
        assert counts["best_scores"] == report.rows("best_scores") > 0
        assert await conn.fetchval(TENANT_MISMATCHES) == 0
        assert await conn.fetchval(BEST_SCORES_MISMATCHES) == 0
        assert await conn.fetchval("SELECT count(*) FROM scores_default") == 0
        span = await conn.fetchrow("SELECT min(created_at), max(created_at) FROM scores")
        assert span is not None
        oldest, newest = span
        assert newest < ANCHOR
        assert (ANCHOR - oldest).days > 365
        assert await conn.fetchval("SELECT count(DISTINCT tableoid) FROM scores") >= 14
        assert await conn.fetchval("SELECT count(DISTINCT org_id) FROM students") == 3

        # Explicit ids moved the sequences along: the next rows written by the API do not collide.
        org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ('New') RETURNING id")
        assert org_id == TINY.organizations + 1
        score_id = await conn.fetchval(
            "INSERT INTO scores (org_id, student_id, game_id, score, stage) VALUES (1, 1, 1, 5, 'practice') "
            "RETURNING id"
        )
        assert score_id == TINY.scores + 1
        assignment_id = await conn.fetchval(
            "INSERT INTO assignments (org_id, student_id, game_id, due_date) VALUES (1, 1, 1, now()) RETURNING id"
        )
        assert assignment_id == TINY.assignments + 1


async def test_unchecked_bulk_load_is_verified_and_needs_the_privilege(scratch_url: str) -> None:
    async with connect(scratch_url) as conn:
        await seed(conn, TINY, anchor=ANCHOR, reset=True, progress=False)
        await verify_foreign_keys(conn)
        tx = conn.transaction()
        await tx.start()
        try:
            assert await skip_row_triggers(conn)
            # Accepted without the per-row check, and caught by the set-based one.
            await conn.execute(
                "INSERT INTO assignments (org_id, student_id, game_id, due_date) VALUES (1, 999999, 1, now())"
            )
            with pytest.raises(SeedIntegrityError, match="assignments_student_id_fkey"):
                await verify_foreign_keys(conn)
        finally:
            await tx.rollback()
        tx = conn.transaction()
        await tx.start()
        try:
            # Without superuser (pg_monitor is a built-in role without it) the seed keeps the row checks.
            await conn.execute("SET LOCAL ROLE pg_monitor")
            assert not await skip_row_triggers(conn)
        finally:
            await tx.rollback()


async def test_seed_command_prints_timings_and_refuses_non_empty(
    scratch_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = replace(Settings(), database_url=scratch_url)
    async with connect(scratch_url) as conn:
        await seed(conn, TINY, anchor=ANCHOR, reset=True, progress=False)
    # The command owns its event loop (asyncio.run), so it runs in a worker thread here.
    assert await asyncio.to_thread(seed_command, settings, "demo", False) == 1
    assert "--reset" in capsys.readouterr().err
    assert await asyncio.to_thread(seed_command, settings, "demo", True) == 0
    out = capsys.readouterr().out
    assert "seeding demo" in out
    assert "scores" in out
    assert "total" in out
    async with connect(scratch_url) as conn:
        assert await conn.fetchval("SELECT count(*) FROM students") == DEMO_COUNTS["students"]
