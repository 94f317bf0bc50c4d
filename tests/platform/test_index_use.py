"""Every hot query reads the index it must: EXPLAIN on a database shaped like a district (issue 12, item 17).

The planner picks indexes by table sizes and statistics, so these plans are only meaningful on data of
the shape production has: the seed's own generator, with the district's classes (40 students a
teacher, 10 teachers an organization), its catalogue (2,000 games) and its assignments (10 a student),
over fewer organizations and months than the district so that it loads in about a second. Then
`VACUUM ANALYZE`, as autovacuum leaves a live database (statistics, and the visibility map that lets
counts be index-only scans). The statements are the loaders' own constants with real parameters.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from loaders.assignments import (
    COUNT_ASSIGNMENTS_BY_STUDENTS_AND_STATUS,
    SELECT_ASSIGNMENT_PAGES,
    SELECT_ASSIGNMENT_PAGES_BY_STATUS,
)
from loaders.games import (
    COUNT_LIVE_GAMES_BY_CATEGORIES,
    LIBRARY_COUNT_STATEMENTS,
    LIBRARY_STATEMENTS,
    SELECT_GAME_PAGES_BY_CATEGORIES,
)
from loaders.leaderboards import SELECT_TOP_CLASS, SELECT_TOP_GLOBAL, SELECT_TOP_ORGANIZATION
from loaders.scores import SELECT_SCORE_PAGES, SELECT_SCORE_PAGES_BY_GAME
from loaders.students import COUNT_STUDENTS_STATEMENTS, STUDENT_PAGE_STATEMENTS
from mlc_graph.tools.seed import Scale, seed
from tests.support.database import own_database
from tests.support.plans import plan_nodes

SCALE = Scale(
    name="index-use",
    organizations=5,
    teachers_per_org=10,
    students_per_teacher=40,
    games=2_000,
    assignments_per_student=10,
    scores=100_000,
    months=3,
)
# Each index (a partition's too) -> (its table, the index declared on the parent table, if any).
SELECT_INDEX_OWNERS = """
SELECT i.relname, coalesce(pt.relname, t.relname) AS table_name, coalesce(pi.relname, i.relname) AS index_name
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
LEFT JOIN pg_inherits ii ON ii.inhrelid = i.oid
LEFT JOIN pg_class pi ON pi.oid = ii.inhparent
LEFT JOIN pg_inherits it ON it.inhrelid = t.oid
LEFT JOIN pg_class pt ON pt.oid = it.inhparent
WHERE i.relname = ANY($1::text[])
"""
# The tables (a partition counts as its parent) of these relations that hold any page.
SELECT_SCANNED_TABLES = """
SELECT DISTINCT coalesce(pt.relname, t.relname) AS table_name
FROM pg_class t
LEFT JOIN pg_inherits it ON it.inhrelid = t.oid
LEFT JOIN pg_class pt ON pt.oid = it.inhparent
WHERE t.relname = ANY($1::text[]) AND t.relpages > 0
"""
SEQ_SCAN = "Seq Scan"


@dataclass(frozen=True, slots=True)
class District:
    pool: asyncpg.Pool
    teachers: list[int]  # one organization's, as one dashboard batch of Teacher.students
    students: list[int]  # one class
    categories: list[int]
    category: int
    level: int
    difficulty: str
    game: int  # the game with the longest board
    org: int
    teacher: int  # a teacher with students on that board


@pytest.fixture(scope="module")
async def district() -> AsyncIterator[District]:
    async with own_database("mlc_idx") as url:
        conn = await asyncpg.connect(url)
        try:
            await seed(conn, SCALE, progress=False)
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            yield await _district(pool)
        finally:
            await pool.close()


async def _district(pool: asyncpg.Pool) -> District:
    teachers = [r["id"] for r in await pool.fetch("SELECT id FROM teachers WHERE org_id = 1 ORDER BY id")]
    students = [
        r["id"] for r in await pool.fetch("SELECT id FROM students WHERE teacher_id = $1", teachers[0])
    ]
    categories = [r["id"] for r in await pool.fetch("SELECT id FROM categories ORDER BY id")]
    live = await pool.fetchrow(
        "SELECT category_id, level_id, difficulty FROM games WHERE status = 'live' ORDER BY id LIMIT 1"
    )
    board = await pool.fetchrow(
        "SELECT game_id, min(org_id) AS org_id, min(teacher_id) AS teacher_id FROM best_scores "
        "GROUP BY game_id ORDER BY count(*) DESC, game_id LIMIT 1"
    )
    assert live is not None and board is not None
    return District(
        pool,
        teachers,
        students,
        categories,
        live["category_id"],
        live["level_id"],
        live["difficulty"],
        board["game_id"],
        board["org_id"],
        board["teacher_id"],
    )


async def scans(pool: asyncpg.Pool, sql: str, *args: Any) -> dict[str, set[str]]:
    """How the plan of `sql` reads each table: the parent indexes it scans, or "Seq Scan"."""
    plan = json.loads(await pool.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))
    return await _access_paths(pool, plan)


async def _access_paths(pool: asyncpg.Pool, plan: Any) -> dict[str, set[str]]:
    nodes = list(plan_nodes(plan))
    indexes = [node["Index Name"] for node in nodes if "Index Name" in node]
    scanned = [node["Relation Name"] for node in nodes if node.get("Node Type") == SEQ_SCAN]
    found: dict[str, set[str]] = defaultdict(set)
    for row in await pool.fetch(SELECT_INDEX_OWNERS, indexes):
        found[row["table_name"]].add(row["index_name"])
    # A month without scores is read whole at no cost (it has no pages): only tables with rows count.
    for row in await pool.fetch(SELECT_SCANNED_TABLES, scanned):
        found[row["table_name"]].add(SEQ_SCAN)
    return dict(found)


def _cursor(row: asyncpg.Record, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[column] for column in columns)


# -- the active roster: Teacher.students(status: ACTIVE), its pages and its count -----------------------


@pytest.mark.parametrize("first", [20, 50, 100])
async def test_active_roster_pages_read_the_active_roster_index(district: District, first: int) -> None:
    sql = STUDENT_PAGE_STATEMENTS[("active", False)]
    used = await scans(district.pool, sql, district.teachers, first + 1)
    assert used["students"] == {"idx_students_teacher_active_name"}, used


async def test_active_roster_next_page_reads_the_active_roster_index(district: District) -> None:
    row = await district.pool.fetchrow(
        "SELECT last_name, first_name, id FROM students WHERE teacher_id = $1 AND status = 'active' "
        "ORDER BY last_name, first_name, id OFFSET 19 LIMIT 1",
        district.teachers[0],
    )
    assert row is not None
    cursor = _cursor(row, ("last_name", "first_name", "id"))
    used = await scans(
        district.pool, STUDENT_PAGE_STATEMENTS[("active", True)], district.teachers, 21, *cursor
    )
    assert used["students"] == {"idx_students_teacher_active_name"}, used


async def test_active_roster_count_reads_the_active_roster_index(district: District) -> None:
    used = await scans(district.pool, COUNT_STUDENTS_STATEMENTS["active"], district.teachers)
    assert used["students"] == {"idx_students_teacher_active_name"}, used


async def test_the_status_literal_is_what_lets_a_generic_plan_use_the_partial_index(
    district: District,
) -> None:
    """asyncpg prepares every statement, and PostgreSQL may switch a prepared statement to a generic
    plan; a partial index is usable only where the planner can prove its predicate from the query."""
    literal = STUDENT_PAGE_STATEMENTS[("active", False)]
    bound = literal.replace("status = 'active'", "status = $3::text")
    async with district.pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            for name, sql in (("literal", literal), ("bound", bound)):
                await conn.execute(f"PREPARE {name} AS {sql}")
            teachers = "ARRAY[" + ", ".join(map(str, district.teachers)) + "]::bigint[]"
            with_literal = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE literal({teachers}, 21)")
            with_parameter = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE bound({teachers}, 21, 'active')"
            )
        finally:
            for name in ("literal", "bound"):
                await conn.execute(f"DEALLOCATE {name}")
            await conn.execute("RESET plan_cache_mode")
    assert (await _access_paths(district.pool, json.loads(with_literal)))["students"] == {
        "idx_students_teacher_active_name"
    }
    assert (
        "idx_students_teacher_active_name"
        not in (await _access_paths(district.pool, json.loads(with_parameter)))["students"]
    )


async def test_whole_roster_pages_read_the_roster_index(district: District) -> None:
    used = await scans(district.pool, STUDENT_PAGE_STATEMENTS[(None, False)], district.teachers, 21)
    assert used["students"] == {"idx_students_teacher_name"}, used


# -- the library: live games, newest first, optionally of one category ----------------------------------


async def test_library_pages_of_a_category_read_the_live_category_index(district: District) -> None:
    one_category = LIBRARY_STATEMENTS[((True, False, False), False)]
    used = await scans(district.pool, one_category, 51, district.category)
    assert used["games"] == {"idx_games_live_category_created"}, used
    used = await scans(district.pool, SELECT_GAME_PAGES_BY_CATEGORIES, district.categories, 51)
    assert used["games"] == {"idx_games_live_category_created"}, used


async def test_live_game_counts_of_a_category_read_a_live_category_index(district: District) -> None:
    # Two live-partial indexes lead with category_id and both cover the count: either is the right one
    # (the planner weighs them by size); what matters is that no query needs idx_games_status_category.
    either = {"idx_games_category_difficulty_level", "idx_games_live_category_created"}
    for sql, args in (
        (LIBRARY_COUNT_STATEMENTS[(True, False, False)], (district.category,)),
        (COUNT_LIVE_GAMES_BY_CATEGORIES, (district.categories,)),
    ):
        used = await scans(district.pool, sql, *args)
        assert len(used["games"]) == 1 and used["games"] <= either, used


async def test_library_filtered_by_category_level_and_difficulty_reads_the_spec_index(
    district: District,
) -> None:
    sql = LIBRARY_STATEMENTS[((True, True, True), False)]
    used = await scans(district.pool, sql, 51, district.category, district.level, district.difficulty)
    assert used["games"] == {"idx_games_category_difficulty_level"}, used


async def test_whole_library_pages_read_the_live_newest_index(district: District) -> None:
    used = await scans(district.pool, LIBRARY_STATEMENTS[((False, False, False), False)], 51)
    assert used["games"] == {"idx_games_live_created"}, used


# -- leaderboards: best_scores, never the raw score history ----------------------------------------------


@pytest.mark.parametrize(
    ("sql", "scope", "index"),
    [
        (SELECT_TOP_GLOBAL, None, "idx_best_scores_game_rank"),
        (SELECT_TOP_ORGANIZATION, "org", "idx_best_scores_org_rank"),
        (SELECT_TOP_CLASS, "teacher", "idx_best_scores_class_rank"),
    ],
)
async def test_leaderboards_read_best_scores_in_rank_order(
    district: District, sql: str, scope: str | None, index: str
) -> None:
    args: list[Any] = [district.game, 50]
    if scope is not None:
        args.append(getattr(district, scope))
    used = await scans(district.pool, sql, *args)
    assert used["best_scores"] == {index}, used
    assert "scores" not in used, used


# -- a student's assignments and scores -----------------------------------------------------------------


async def test_assignments_of_one_status_read_the_spec_index(district: District) -> None:
    used = await scans(district.pool, SELECT_ASSIGNMENT_PAGES_BY_STATUS, district.students, 11, "active")
    assert used["assignments"] == {"idx_assignments_student_status"}, used
    used = await scans(district.pool, COUNT_ASSIGNMENTS_BY_STUDENTS_AND_STATUS, district.students, "active")
    assert used["assignments"] == {"idx_assignments_student_status"}, used


async def test_assignments_of_every_status_read_the_due_date_index(district: District) -> None:
    used = await scans(district.pool, SELECT_ASSIGNMENT_PAGES, district.students, 11)
    assert used["assignments"] == {"idx_assignments_student_due"}, used


async def test_scores_of_one_game_read_the_spec_index(district: District) -> None:
    used = await scans(district.pool, SELECT_SCORE_PAGES_BY_GAME, district.students, 11, district.game)
    assert used["scores"] == {"idx_scores_student_game_created"}, used


async def test_score_history_reads_the_newest_first_index(district: District) -> None:
    used = await scans(district.pool, SELECT_SCORE_PAGES, district.students, 11)
    assert used["scores"] == {"idx_scores_student_created"}, used
