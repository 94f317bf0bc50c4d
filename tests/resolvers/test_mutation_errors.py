"""Every write-path error code is reachable, and database errors become coded client errors (never a 500)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from mlc_graph.platform.db import Executor
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import ApiError, BadUserInputError, ConflictError, NotFoundError
from tests.support.factories import make_catalogue, make_org, make_score, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run
from tests.support.http import app_client, bearer, http_settings

ASSIGN = "mutation($input: AssignGameInput!) { assignGame(input: $input) { assignments { id } } }"
SUBMIT = "mutation($input: SubmitScoreInput!) { submitScore(input: $input) { rank } }"
IMPORT = "mutation($input: ImportStudentsInput!) { importStudents(input: $input) { created } }"


async def test_every_error_code_is_reachable_and_writes_nothing(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db, tier="PRELUDE")
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 19)
    other = await make_org(clean_db, "Other")
    (foreign,) = await make_students(clean_db, other, await make_teacher(clean_db, other), 1)
    _, _, (game,) = await make_catalogue(clean_db, games=1)
    await make_score(clean_db, org, students[0], game, 10)
    await run(
        clean_db,
        SUBMIT,
        {"input": {"gameId": gid("Game", game), "score": 5, "stage": "PRACTICE", "idempotencyKey": "k"}},
        principal("student", students[0], org),
    )
    before = await clean_db.fetchval(
        "SELECT (SELECT count(*) FROM scores) + (SELECT count(*) FROM assignments)"
    )

    def assign(*ids: int) -> dict[str, Any]:
        return {
            "input": {
                "gameId": gid("Game", game),
                "studentIds": [gid("Student", i) for i in ids],
                "dueDate": "2027-01-01",
            }
        }

    def submit(score: int) -> dict[str, Any]:
        return {
            "input": {"gameId": gid("Game", game), "score": score, "stage": "PRACTICE", "idempotencyKey": "k"}
        }

    staff, student = principal("teacher", teacher, org), principal("student", students[0], org)
    roster = {
        "input": {"teacherId": gid("Teacher", teacher), "csv": "first_name,last_name,username\nA,B,newkid\n"}
    }
    cases: list[tuple[str, str, dict[str, Any], Any]] = [
        ("UNAUTHENTICATED", ASSIGN, assign(students[0]), None),
        ("FORBIDDEN", ASSIGN, assign(students[0]), student),
        ("NOT_FOUND", ASSIGN, assign(students[0], foreign), staff),
        ("BAD_USER_INPUT", SUBMIT, submit(5000), student),
        ("CONFLICT", SUBMIT, submit(6), student),
        ("QUOTA_EXCEEDED", IMPORT, roster, staff),
    ]
    for code, document, variables, viewer in cases:
        result, _ = await run(clean_db, document, variables, viewer)
        assert result.data is None, (code, result.data)
        assert result.errors is not None and result.errors[0].extensions is not None, code
        assert result.errors[0].extensions["code"] == code, (code, result.errors)
    after = await clean_db.fetchval(
        "SELECT (SELECT count(*) FROM scores) + (SELECT count(*) FROM assignments)"
    )
    assert after == before
    assert await clean_db.fetchval("SELECT count(*) FROM students") == 20


async def test_quota_numbers_reach_the_http_client(clean_db: asyncpg.Pool, database_url: str) -> None:
    org = await make_org(clean_db, tier="SOLO")
    teacher = await make_teacher(clean_db, org)
    await make_students(clean_db, org, teacher, 18)
    csv = "first_name,last_name,username\nA,B,kid1\nC,D,kid2\n"
    body = {"query": IMPORT, "variables": {"input": {"teacherId": gid("Teacher", teacher), "csv": csv}}}
    async with app_client(http_settings(database_url)) as client:
        response = await client.post("/graphql", json=body, headers=bearer("teacher", teacher, org))
        assert response.status == 200
        error = (await response.json())["errors"][0]
    assert error["extensions"] == {
        "code": "QUOTA_EXCEEDED",
        "limit": 19,
        "current": 18,
        "requested": 2,
        "tier": "SOLO",
    }
    assert "19" in error["message"]


@pytest.mark.parametrize(
    ("sql", "expected", "sqlstate"),
    [
        ("INSERT INTO organizations (id, name) VALUES ($1, 'dup')", ConflictError, "23505"),
        (
            "INSERT INTO teachers (org_id, first_name, last_name) VALUES ($1 + 1000, 'a', 'b')",
            NotFoundError,
            "23503",
        ),
        (
            "INSERT INTO organizations (name, tier) VALUES ('x' || $1::bigint, 'GOLD')",
            BadUserInputError,
            "23514",
        ),
        ("INSERT INTO organizations (name, seat_count) VALUES (NULL, $1)", BadUserInputError, "23502"),
        ("SELECT $1::bigint + 'seven'::int", BadUserInputError, "22P02"),
    ],
)
async def test_integrity_errors_become_coded_errors_and_roll_back(
    executor: Executor, sql: str, expected: type[ApiError], sqlstate: str
) -> None:
    org = await make_org(executor.pool, "Kept")

    async def write() -> None:
        async with client_errors(), executor.transaction() as tx:
            await tx.execute("INSERT INTO organizations (name) VALUES ('rolled back')")
            await tx.execute(sql, org)

    with pytest.raises(expected) as caught:
        await write()
    assert caught.value.extensions == {"code": expected.code, "sqlstate": sqlstate}
    # The message names no table, column or constraint.
    assert not any(word in caught.value.message for word in ("organizations", "teachers", "tier", "_key"))
    assert await executor.fetchval("SELECT array_agg(name ORDER BY id) FROM organizations") == ["Kept"]


async def test_other_database_errors_are_not_dressed_up_as_client_errors(executor: Executor) -> None:
    async def read() -> None:
        async with client_errors():
            await executor.execute("SELECT * FROM no_such_table")

    with pytest.raises(asyncpg.UndefinedTableError):
        await read()
