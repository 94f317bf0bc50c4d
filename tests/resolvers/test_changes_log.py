"""The change log behind delta sync: every write path records what changed, in its own transaction.

Read straight from `sync_changes` (the sync query itself is tested in test_changes.py), so each test
says exactly which rows one write leaves: entity, id, tombstone and the scope columns.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from mlc_graph.platform.change_partitions import drop_expired_change_partitions, ensure_change_partitions
from tests.support.database import own_database
from tests.support.factories import make_assignments, make_catalogue, make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

Change = tuple[str, int, bool, int, int | None, int | None]  # entity, id, tombstone, org, teacher, student

SELECT_CHANGES = """
SELECT entity, entity_id, tombstone, org_id, teacher_id, student_id FROM sync_changes
WHERE seq > $1 ORDER BY xid, seq
"""


async def mark(pool: asyncpg.Pool) -> int:
    """The log's position now: changes() returns what was written after it."""
    last: int = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM sync_changes")
    return last


async def changes(pool: asyncpg.Pool, since: int) -> list[Change]:
    return [tuple(r) for r in await pool.fetch(SELECT_CHANGES, since)]


async def _school(pool: asyncpg.Pool) -> tuple[int, int, list[int], list[int]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, 2)
    _, _, games = await make_catalogue(pool, games=2)
    return org, teacher, students, games


def ok(result: Any) -> dict[str, Any]:
    assert result.errors is None, result.errors
    data: dict[str, Any] = result.data
    return data


async def test_submit_score_records_the_score_best_score_completion_and_activity(
    clean_db: asyncpg.Pool,
) -> None:
    org, teacher, students, games = await _school(clean_db)
    await make_assignments(clean_db, org, [students[0]], [games[0]])
    assignment: int = await clean_db.fetchval("SELECT id FROM assignments")
    since = await mark(clean_db)
    mutation = """mutation($input: SubmitScoreInput!) { submitScore(input: $input) { score { id } } }"""
    variables = {
        "input": {"gameId": gid("Game", games[0]), "score": 640, "stage": "CHALLENGE", "idempotencyKey": "a"}
    }
    ok((await run(clean_db, mutation, variables, principal("student", students[0], org)))[0])
    score: int = await clean_db.fetchval("SELECT id FROM scores")
    me = (org, teacher, students[0])
    assert sorted(await changes(clean_db, since)) == sorted(
        [
            ("Score", score, False, *me),
            ("BestScore", games[0], False, *me),
            ("Assignment", assignment, False, *me),
            ("Student", students[0], False, *me),
        ]
    )
    # A retry writes nothing, so it records nothing.
    since = await mark(clean_db)
    ok((await run(clean_db, mutation, variables, principal("student", students[0], org)))[0])
    assert await changes(clean_db, since) == []


async def test_assignment_writes_record_upserts_and_archiving_records_a_tombstone(
    clean_db: asyncpg.Pool,
) -> None:
    org, teacher, students, games = await _school(clean_db)
    staff = principal("teacher", teacher, org)
    since = await mark(clean_db)
    assign = """mutation($input: AssignGameInput!) { assignGame(input: $input) { assignments { id } } }"""
    ids = [gid("Student", s) for s in students]
    ok(
        (
            await run(
                clean_db,
                assign,
                {"input": {"gameId": gid("Game", games[1]), "studentIds": ids, "dueDate": "2026-12-24"}},
                staff,
            )
        )[0]
    )
    made = [r["id"] for r in await clean_db.fetch("SELECT id FROM assignments ORDER BY student_id")]
    assert await changes(clean_db, since) == [
        ("Assignment", made[0], False, org, teacher, students[0]),
        ("Assignment", made[1], False, org, teacher, students[1]),
    ]
    since = await mark(clean_db)
    update = """mutation($input: UpdateAssignmentStatusInput!) { updateAssignmentStatus(input: $input) { assignment { id } } }"""
    archive = {"input": {"assignmentId": gid("Assignment", made[0]), "status": "ARCHIVED"}}
    ok((await run(clean_db, update, archive, staff))[0])
    assert await changes(clean_db, since) == [("Assignment", made[0], True, org, teacher, students[0])]
    since = await mark(clean_db)
    complete = """mutation($input: CompleteAssignmentInput!) { completeAssignment(input: $input) { assignment { id } } }"""
    ok((await run(clean_db, complete, {"input": {"assignmentId": gid("Assignment", made[1])}}, staff))[0])
    assert await changes(clean_db, since) == [("Assignment", made[1], False, org, teacher, students[1])]


async def test_a_refused_write_rolls_its_changes_back_with_it(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _school(clean_db)
    other_org = await make_org(clean_db, "Other")
    stranger = await make_students(clean_db, other_org, await make_teacher(clean_db, other_org), 1)
    since = await mark(clean_db)
    assign = """mutation($input: AssignGameInput!) { assignGame(input: $input) { assignments { id } } }"""
    ids = [gid("Student", students[0]), gid("Student", stranger[0])]
    result, _ = await run(
        clean_db,
        assign,
        {"input": {"gameId": gid("Game", games[0]), "studentIds": ids, "dueDate": "2026-12-24"}},
        principal("teacher", teacher, org),
    )
    assert result.errors is not None and (result.errors[0].extensions or {})["code"] == "NOT_FOUND"
    # The statement inserted students[0]'s assignment and its change; the rollback took both.
    assert await changes(clean_db, since) == []


async def test_import_records_one_student_upsert_per_new_student(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    since = await mark(clean_db)
    mutation = """mutation($input: ImportStudentsInput!) { importStudents(input: $input) { created } }"""
    csv = "first_name,last_name,username\nAna,Perez,ana.p\nBo,Li,bo.l\n"
    variables = {"input": {"teacherId": gid("Teacher", teacher), "csv": csv}}
    assert (
        ok((await run(clean_db, mutation, variables, principal("teacher", teacher, org)))[0])[
            "importStudents"
        ]["created"]
        == 2
    )
    ids = [r["id"] for r in await clean_db.fetch("SELECT id FROM students ORDER BY id")]
    assert await changes(clean_db, since) == [("Student", i, False, org, teacher, i) for i in ids]
    # The same roster again skips every row: nothing changed, nothing recorded.
    since = await mark(clean_db)
    ok((await run(clean_db, mutation, variables, principal("teacher", teacher, org)))[0])
    assert await changes(clean_db, since) == []


async def test_create_student_records_the_new_student_and_a_refusal_records_nothing(
    clean_db: asyncpg.Pool,
) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    since = await mark(clean_db)
    mutation = (
        """mutation($input: CreateStudentInput!) { createStudent(input: $input) { clientMutationId } }"""
    )
    variables = {
        "input": {
            "teacherId": gid("Teacher", teacher),
            "firstName": "Ana",
            "lastName": "Perez",
            "username": "ana.p",
        }
    }
    ok((await run(clean_db, mutation, variables, principal("teacher", teacher, org)))[0])
    created: int = await clean_db.fetchval("SELECT id FROM students WHERE username = 'ana.p'")
    assert await changes(clean_db, since) == [("Student", created, False, org, teacher, created)]
    since = await mark(clean_db)
    again, _ = await run(clean_db, mutation, variables, principal("teacher", teacher, org))
    assert again.errors is not None  # the username is taken: nothing written, nothing recorded
    assert await changes(clean_db, since) == []


async def test_catalogue_changes_are_shared_and_only_live_games_count(clean_db: asyncpg.Pool) -> None:
    _, _, (draft,) = await make_catalogue(clean_db, games=1, status="draft")
    since = await mark(clean_db)
    await clean_db.execute("UPDATE games SET title = 'Draft edit' WHERE id = $1", draft)
    assert await changes(clean_db, since) == []  # drafts are nobody's to sync
    await clean_db.execute("UPDATE games SET status = 'live' WHERE id = $1", draft)
    await clean_db.execute("UPDATE games SET title = 'Renamed' WHERE id = $1", draft)
    await clean_db.execute("UPDATE games SET status = 'retired' WHERE id = $1", draft)
    await clean_db.execute("UPDATE games SET title = 'Retired edit' WHERE id = $1", draft)
    assert await changes(clean_db, since) == [
        ("Game", draft, False, 0, None, None),
        ("Game", draft, False, 0, None, None),
        ("Game", draft, True, 0, None, None),
    ]


async def test_a_student_moving_class_leaves_a_tombstone_with_the_old_teacher(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, _ = await _school(clean_db)
    other = await make_teacher(clean_db, org, "Otto")
    since = await mark(clean_db)
    await clean_db.execute("UPDATE students SET teacher_id = $1 WHERE id = $2", other, students[0])
    await clean_db.execute(
        "UPDATE students SET password_hash = 'new', email = 'n@x.test' WHERE id = $1", students[1]
    )
    assert await changes(clean_db, since) == [
        ("Student", students[0], True, org, teacher, None),
        ("Student", students[0], False, org, other, students[0]),
    ]


async def test_changes_carry_the_writing_transaction_and_its_order(clean_db: asyncpg.Pool) -> None:
    _, _, students, _ = await _school(clean_db)
    since = await mark(clean_db)
    async with clean_db.acquire() as conn, conn.transaction():
        xid = await conn.fetchval("SELECT pg_current_xact_id()::text")
        await conn.execute("UPDATE students SET first_name = 'A' WHERE id = $1", students[0])
        await conn.execute("UPDATE students SET first_name = 'B' WHERE id = $1", students[0])
    rows = await clean_db.fetch(
        "SELECT xid::text AS xid, seq FROM sync_changes WHERE seq > $1 ORDER BY seq", since
    )
    assert [r["xid"] for r in rows] == [xid, xid]
    assert rows[0]["seq"] < rows[1]["seq"]


def _month_name(day: date) -> str:
    return f"sync_changes_{day:%Y_%m}"


async def test_partitions_are_made_ahead_and_dropped_after_the_retention_window() -> None:
    # Its own database: dropping "expired" months relative to 2031 would drop this run's partitions.
    async with own_database("mlc_test_sync") as url:
        await _partitions_round_trip(url)


async def _partitions_round_trip(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # A far-future month whose rows fell into the default partition is created with them moved in.
        future = date(2031, 5, 1)
        moment = datetime(2031, 5, 17, tzinfo=UTC)
        await conn.execute(
            "INSERT INTO sync_changes (org_id, entity, entity_id, changed_at) VALUES (0, 'Game', 1, $1)",
            moment,
        )
        assert await ensure_change_partitions(conn, today=future, ahead=0) == [
            _month_name(date(2031, 4, 1)),
            _month_name(future),
        ]
        where = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM sync_changes WHERE changed_at = $1", moment
        )
        assert where == _month_name(future)
        # Kept while any of the month is within the retention window plus a day; dropped after.
        end = datetime(2031, 6, 1, tzinfo=UTC)
        assert _month_name(future) not in await drop_expired_change_partitions(
            conn, 30, end + timedelta(days=31, seconds=-1)
        )
        dropped = await drop_expired_change_partitions(conn, 30, end + timedelta(days=31))
        assert _month_name(future) in dropped
        assert await conn.fetchval("SELECT count(*) FROM sync_changes") == 0
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "table", ["scores", "assignments", "best_scores", "students", "games", "student_badges"]
)
async def test_every_synced_table_has_its_triggers(clean_db: asyncpg.Pool, table: str) -> None:
    events = await clean_db.fetch(
        "SELECT DISTINCT event_manipulation FROM information_schema.triggers "
        "WHERE event_object_table = $1 AND trigger_name LIKE 'sync_%'",
        table,
    )
    expected = (
        {"INSERT", "DELETE"} if table in {"scores", "student_badges"} else {"INSERT", "UPDATE", "DELETE"}
    )
    assert {r[0] for r in events} == expected
