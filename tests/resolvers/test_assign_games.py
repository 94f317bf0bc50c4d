"""assignGame, updateAssignmentStatus and completeAssignment over real PostgreSQL, with statement counts."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.support.factories import make_assignments, make_catalogue, make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

ASSIGN = """
mutation Assign($input: AssignGameInput!) {
  assignGame(input: $input) { clientMutationId assignments { id status dueDate completedAt } }
}
"""
UPDATE = """
mutation Update($input: UpdateAssignmentStatusInput!) {
  updateAssignmentStatus(input: $input) { assignment { id status completedAt } }
}
"""
COMPLETE = """
mutation Complete($input: CompleteAssignmentInput!) {
  completeAssignment(input: $input) { clientMutationId assignment { id status completedAt } }
}
"""


async def _school(pool: asyncpg.Pool) -> tuple[int, int, list[int], list[int]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, 4)
    _, _, games = await make_catalogue(pool, games=2)
    return org, teacher, students, games


def assign_input(game: int, students: list[int], **extra: Any) -> dict[str, Any]:
    ids = [gid("Student", s) for s in students]
    return {"input": {"gameId": gid("Game", game), "studentIds": ids, "dueDate": "2026-12-24", **extra}}


def code_of(result: Any) -> str:
    assert result.errors is not None, result.data
    return str(result.errors[0].extensions["code"])


async def count_assignments(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM assignments")
    return n


async def test_assign_game_writes_one_statement_for_the_whole_class(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _school(clean_db)
    # A repeated id is one assignment; the order given is the order returned.
    wanted = [students[2], students[0], students[2], students[1]]
    result, stats = await run(
        clean_db,
        ASSIGN,
        assign_input(games[0], wanted, clientMutationId="x"),
        principal("teacher", teacher, org),
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload = result.data["assignGame"]
    assert payload["clientMutationId"] == "x"
    assert [a["status"] for a in payload["assignments"]] == ["ACTIVE"] * 3
    assert {a["dueDate"] for a in payload["assignments"]} == {"2026-12-24"}
    rows = await clean_db.fetch("SELECT student_id, teacher_id, game_id FROM assignments ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (s, teacher, games[0]) for s in (students[2], students[0], students[1])
    ]
    assert payload["assignments"][0]["id"] == gid("Assignment", 1)
    # the game check (a read) and one INSERT ... SELECT FROM unnest for every student.
    assert stats.statements == 2, stats.texts
    assert sum("INSERT INTO assignments" in t for t in stats.texts) == 1


async def test_one_student_of_another_organization_refuses_the_whole_call(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _school(clean_db)
    other = await make_org(clean_db, "Other")
    (foreign,) = await make_students(clean_db, other, await make_teacher(clean_db, other), 1)
    result, _ = await run(
        clean_db, ASSIGN, assign_input(games[0], [*students, foreign]), principal("teacher", teacher, org)
    )
    assert code_of(result) == "NOT_FOUND"
    assert result.errors is not None and result.errors[0].extensions is not None
    assert result.errors[0].extensions["ids"] == [gid("Student", foreign)]
    assert await count_assignments(clean_db) == 0


async def test_admins_assign_in_the_name_of_each_students_teacher(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _school(clean_db)
    admin = await make_teacher(clean_db, org, "Ada", "Admin")
    result, _ = await run(
        clean_db, ASSIGN, assign_input(games[1], students[:2]), principal("admin", admin, org)
    )
    assert result.errors is None, result.errors
    assert {r["teacher_id"] for r in await clean_db.fetch("SELECT teacher_id FROM assignments")} == {teacher}


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("student", "FORBIDDEN"),
        ("anonymous", "UNAUTHENTICATED"),
        ("no students", "BAD_USER_INPUT"),
        ("too many students", "BAD_USER_INPUT"),
        ("draft game", "NOT_FOUND"),
        ("retired game", "BAD_USER_INPUT"),
        ("malformed student id", "NOT_FOUND"),
    ],
)
async def test_assign_game_refusals(clean_db: asyncpg.Pool, case: str, code: str) -> None:
    org, teacher, students, games = await _school(clean_db)
    viewer = principal("teacher", teacher, org)
    variables = assign_input(games[0], students)
    if case == "student":
        viewer = principal("student", students[0], org)
    elif case == "anonymous":
        viewer = None  # type: ignore[assignment]
    elif case == "no students":
        variables["input"]["studentIds"] = []
    elif case == "too many students":
        variables["input"]["studentIds"] = [gid("Student", students[0])] * 501
    elif case == "malformed student id":
        variables["input"]["studentIds"] = ["not-an-id"]
    else:
        _, _, (game,) = await make_catalogue(clean_db, games=1, status=case.split()[0])
        variables = assign_input(game, students)
    result, _ = await run(clean_db, ASSIGN, variables, viewer)
    assert code_of(result) == code
    assert await count_assignments(clean_db) == 0


async def test_update_assignment_status_moves_completed_at_with_the_status(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _school(clean_db)
    await make_assignments(clean_db, org, students[:1], games[:1])
    teacher_viewer = principal("teacher", teacher, org)
    seen = []
    for status in ("COMPLETED", "ARCHIVED", "ACTIVE"):
        variables = {"input": {"assignmentId": gid("Assignment", 1), "status": status}}
        result, stats = await run(clean_db, UPDATE, variables, teacher_viewer)
        assert result.errors is None, result.errors
        assert result.data is not None
        seen.append(result.data["updateAssignmentStatus"]["assignment"])
        assert stats.statements == 1, stats.texts
    assert [a["status"] for a in seen] == ["COMPLETED", "ARCHIVED", "ACTIVE"]
    # Archiving keeps when it was completed; reactivating clears it.
    assert seen[0]["completedAt"] is not None and seen[1]["completedAt"] == seen[0]["completedAt"]
    assert seen[2]["completedAt"] is None


async def test_update_assignment_status_is_for_staff_of_the_organization(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _school(clean_db)
    await make_assignments(clean_db, org, students[:1], games[:1])
    other = await make_org(clean_db, "Other")
    outsider = await make_teacher(clean_db, other)
    variables = {"input": {"assignmentId": gid("Assignment", 1), "status": "ARCHIVED"}}
    result, _ = await run(clean_db, UPDATE, variables, principal("teacher", outsider, other))
    assert code_of(result) == "NOT_FOUND"
    result, _ = await run(clean_db, UPDATE, variables, principal("student", students[0], org))
    assert code_of(result) == "FORBIDDEN"
    assert await clean_db.fetchval("SELECT status FROM assignments") == "active"


async def test_students_complete_their_own_assignments_once(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _school(clean_db)
    await make_assignments(clean_db, org, students[:2], games[:1])
    mine = {"input": {"assignmentId": gid("Assignment", 1), "clientMutationId": "c"}}
    me = principal("student", students[0], org)
    first, stats = await run(clean_db, COMPLETE, mine, me)
    assert first.errors is None, first.errors
    assert first.data is not None
    assert first.data["completeAssignment"]["assignment"]["status"] == "COMPLETED"
    assert first.data["completeAssignment"]["clientMutationId"] == "c"
    assert stats.statements == 2, stats.texts  # the visibility check and the UPDATE
    again, _ = await run(clean_db, COMPLETE, mine, me)
    assert again.data == first.data  # completing twice keeps the first completion time
    theirs = {"input": {"assignmentId": gid("Assignment", 2)}}
    result, _ = await run(clean_db, COMPLETE, theirs, me)
    assert code_of(result) == "NOT_FOUND"


async def test_an_archived_assignment_cannot_be_completed(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _school(clean_db)
    await make_assignments(clean_db, org, students[:1], games[:1], status="archived")
    variables = {"input": {"assignmentId": gid("Assignment", 1)}}
    result, _ = await run(clean_db, COMPLETE, variables, principal("student", students[0], org))
    assert code_of(result) == "CONFLICT"
    assert await clean_db.fetchval("SELECT status FROM assignments") == "archived"
