"""createStudent: one student into a class, with the roster import's validation, uniqueness and cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from mlc_graph.platform.config import Settings
from tests.support.factories import make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

CREATE = """
mutation Create($input: CreateStudentInput!) {
  createStudent(input: $input) { clientMutationId student { id username firstName lastName status teacher { id } } }
}
"""


def create_input(teacher: int, username: str, **fields: Any) -> dict[str, Any]:
    values = {"firstName": "Ana", "lastName": "Pérez", "username": username, "clientMutationId": "c1"}
    values.update(fields)
    return {"input": {"teacherId": gid("Teacher", teacher), **values}}


def code_of(result: Any) -> str:
    if result.errors is None:
        return "OK"
    code: str = result.errors[0].extensions["code"]
    return code


async def count_students(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM students")
    return n


async def test_a_teacher_adds_a_student_to_their_class(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    result, _ = await run(
        clean_db,
        CREATE,
        create_input(teacher, "  Ana.Perez ", firstName=" Ana "),
        principal("teacher", teacher, org),
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload = result.data["createStudent"]
    assert payload["clientMutationId"] == "c1"
    student = payload["student"]
    assert (student["username"], student["firstName"], student["status"]) == ("ana.perez", "Ana", "ACTIVE")
    assert student["teacher"] == {"id": gid("Teacher", teacher)}
    row = await clean_db.fetchrow(
        "SELECT org_id, teacher_id, email FROM students WHERE username = 'ana.perez'"
    )
    assert row is not None and tuple(row) == (org, teacher, None)
    # Recorded for delta sync like every write (the students trigger of 0005_sync_changes.sql).
    change = await clean_db.fetchrow(
        "SELECT org_id, teacher_id, entity, tombstone FROM sync_changes WHERE entity = 'Student'"
    )
    assert change is not None and tuple(change) == (org, teacher, "Student", False)


async def test_invalid_fields_are_refused_all_at_once_and_nothing_is_written(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    result, stats = await run(
        clean_db,
        CREATE,
        create_input(teacher, "A B", lastName=" ", firstName="x" * 101),
        principal("teacher", teacher, org),
    )
    assert result.errors is not None
    ext = result.errors[0].extensions
    assert ext is not None and ext["code"] == "BAD_USER_INPUT"
    assert sorted(p["field"] for p in ext["problems"]) == ["firstName", "lastName", "username"]
    assert stats.statements == 0
    assert await count_students(clean_db) == 0


async def test_a_username_taken_in_the_organization_is_a_conflict(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    colleague = await make_teacher(clean_db, org, "Col")
    first, _ = await run(
        clean_db, CREATE, create_input(colleague, "sam01"), principal("admin", colleague, org)
    )
    assert first.errors is None, first.errors
    again, _ = await run(clean_db, CREATE, create_input(teacher, "SAM01"), principal("teacher", teacher, org))
    assert again.errors is not None
    assert again.errors[0].extensions == {"code": "CONFLICT", "argument": "username"}
    # Another organization may use the same username.
    elsewhere = await make_org(clean_db, "Elsewhere")
    outsider = await make_teacher(clean_db, elsewhere)
    other, _ = await run(
        clean_db, CREATE, create_input(outsider, "sam01"), principal("teacher", outsider, elsewhere)
    )
    assert other.errors is None, other.errors
    assert await count_students(clean_db) == 2


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("student", "FORBIDDEN"),
        ("another teacher's class", "FORBIDDEN"),
        ("admin, another organization's teacher", "NOT_FOUND"),
        ("anonymous", "UNAUTHENTICATED"),
        ("admin of the organization", "OK"),
    ],
)
async def test_who_may_create_a_student(clean_db: asyncpg.Pool, case: str, code: str) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    colleague = await make_teacher(clean_db, org, "Col")
    other_org = await make_org(clean_db, "Other")
    outsider = await make_teacher(clean_db, other_org)
    (student,) = await make_students(clean_db, org, teacher, 1)
    target, viewer = {
        "student": (teacher, principal("student", student, org)),
        "another teacher's class": (colleague, principal("teacher", teacher, org)),
        "admin, another organization's teacher": (outsider, principal("admin", teacher, org)),
        "anonymous": (teacher, None),
        "admin of the organization": (colleague, principal("admin", teacher, org)),
    }[case]
    result, _ = await run(clean_db, CREATE, create_input(target, "new01"), viewer)
    assert code_of(result) == code
    assert await count_students(clean_db) == (2 if code == "OK" else 1)


async def test_the_cap_in_effect_refuses_the_next_student(clean_db: asyncpg.Pool) -> None:
    """MLC_TIER_OVERRIDES sets the cap (here 3 for PRELUDE), as `mlc-graph tiers` shows it."""
    settings = replace(Settings(), tier_overrides='{"PRELUDE": {"students": 3}}')
    org = await make_org(clean_db, tier="PRELUDE", seats=100)
    teacher = await make_teacher(clean_db, org)
    await make_students(clean_db, org, teacher, 3)
    result, stats = await run(
        clean_db,
        CREATE,
        create_input(teacher, "one.more"),
        principal("teacher", teacher, org),
        settings=settings,
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {
        "code": "QUOTA_EXCEEDED",
        "limit": 3,
        "current": 3,
        "requested": 1,
        "tier": "PRELUDE",
    }
    assert stats.statements == 2  # the lock and the count; no insert
    assert await count_students(clean_db) == 3


async def test_concurrent_creators_at_the_cap_add_exactly_the_seats_left(clean_db: asyncpg.Pool) -> None:
    settings = replace(Settings(), tier_overrides='{"SOLO": {"students": 5}}')
    org = await make_org(clean_db, tier="SOLO")
    teacher = await make_teacher(clean_db, org)
    colleague = await make_teacher(clean_db, org, "Col")
    await make_students(clean_db, org, teacher, 3)
    creators = [
        run(clean_db, CREATE, create_input(t, f"kid{n:02d}"), principal("teacher", t, org), settings=settings)
        for n, t in enumerate([teacher, colleague] * 4)
    ]
    codes = sorted(code_of(result) for result, _ in await asyncio.gather(*creators))
    assert codes == ["OK", "OK"] + ["QUOTA_EXCEEDED"] * 6
    assert await count_students(clean_db) == 5


async def test_concurrent_creators_of_one_username_make_one_student(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    viewer = principal("teacher", teacher, org)
    results = await asyncio.gather(
        *(run(clean_db, CREATE, create_input(teacher, "same.kid"), viewer) for _ in range(6))
    )
    assert sorted(code_of(r) for r, _ in results) == ["CONFLICT"] * 5 + ["OK"]
    assert await count_students(clean_db) == 1
