"""importStudents and `mlc-graph import-students`: all or nothing, every bad row at once, the tier's limit."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from loaders.student_imports import CHUNK_SIZE, LOCK_TEACHER_ORGANIZATION
from mlc_graph.cli import main
from mlc_graph.domain.roster import HeaderError, parse_roster
from mlc_graph.platform.config import Settings
from tests.support.factories import make_catalogue, make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

IMPORT = """
mutation Import($input: ImportStudentsInput!) {
  importStudents(input: $input) { clientMutationId created skipped errors { row column message } }
}
"""
HEADER = "first_name,last_name,username,email\n"


def roster(count: int, start: int = 1, prefix: str = "kid") -> str:
    rows = [f"Ana{n},Pérez{n},{prefix}{n:05d},{prefix}{n}@example.test" for n in range(start, start + count)]
    return HEADER + "\n".join(rows) + "\n"


def import_input(teacher: int, csv: str) -> dict[str, Any]:
    return {"input": {"teacherId": gid("Teacher", teacher), "csv": csv, "clientMutationId": "imp"}}


async def _school(pool: asyncpg.Pool, tier: str = "ENSEMBLE", seats: int = 100) -> tuple[int, int]:
    org = await make_org(pool, tier=tier, seats=seats)
    return org, await make_teacher(pool, org)


async def count_students(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM students")
    return n


def extensions(result: Any) -> dict[str, Any]:
    assert result.errors is not None, result.data
    ext: dict[str, Any] = result.errors[0].extensions
    return ext


async def test_import_creates_new_students_and_skips_existing_usernames(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db)
    await clean_db.execute(
        "INSERT INTO students (org_id, teacher_id, first_name, last_name, username) VALUES ($1, $2, 'A', 'B', 'kid00002')",
        org,
        teacher,
    )
    csv = "Username, First_Name ,last_name\nKID00001,Ana,Pérez\nkid00002,Ben,Ode\nkid00003,Cy,Lu\n"
    result, stats = await run(
        clean_db, IMPORT, import_input(teacher, csv), principal("teacher", teacher, org)
    )
    assert result.errors is None, result.errors
    assert result.data == {
        "importStudents": {"clientMutationId": "imp", "created": 2, "skipped": 1, "errors": []}
    }
    # lock the organization, count, one chunk.
    assert stats.statements == 3, stats.texts
    rows = await clean_db.fetch("SELECT username, first_name, teacher_id FROM students ORDER BY username")
    assert [tuple(r) for r in rows] == [
        ("kid00001", "Ana", teacher),
        ("kid00002", "A", teacher),
        ("kid00003", "Cy", teacher),
    ]


async def test_chunks_of_500_in_one_transaction(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db, seats=2000)
    result, stats = await run(
        clean_db, IMPORT, import_input(teacher, roster(1201)), principal("admin", teacher, org)
    )
    assert result.errors is None, result.errors
    assert result.data is not None and result.data["importStudents"]["created"] == 1201
    inserts = [t for t in stats.texts if "INSERT INTO students" in t]
    assert len(inserts) == -(-1201 // CHUNK_SIZE) == 3
    assert stats.statements == 2 + 3
    assert await count_students(clean_db) == 1201


async def test_one_bad_row_in_a_thousand_writes_nothing(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db, seats=5000)
    lines = roster(1000).splitlines()
    lines[501] = "Ana,,kid00501,kid@example.test"  # row 502 as a spreadsheet counts (header is row 1)
    result, stats = await run(
        clean_db, IMPORT, import_input(teacher, "\n".join(lines)), principal("teacher", teacher, org)
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload = result.data["importStudents"]
    assert (payload["created"], payload["skipped"]) == (0, 0)
    assert payload["errors"] == [{"row": 502, "column": "last_name", "message": "is required"}]
    assert stats.statements == 0
    assert await count_students(clean_db) == 0


async def test_every_bad_row_is_reported_at_once(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db)
    csv = (
        HEADER + "Ana,Pérez,ana.p,ana@example.test\n"
        ",Ode,b!,not-an-address\n"
        "Cy,Lu,ANA.P,\n"
        "\n"
        "Di,Mo,dimo\n"
        "Ed,No,ed,\n"
    )
    result, _ = await run(clean_db, IMPORT, import_input(teacher, csv), principal("teacher", teacher, org))
    assert result.data is not None
    errors = [(e["row"], e["column"]) for e in result.data["importStudents"]["errors"]]
    assert errors == [
        (3, "first_name"),
        (3, "username"),
        (3, "email"),
        (4, "username"),  # the same username as row 2, whatever its case
        (6, None),  # three cells under a four-column header
        (7, "username"),  # too short
    ]
    assert await count_students(clean_db) == 0


@pytest.mark.parametrize(
    ("header", "missing", "unknown"),
    [
        ("first_name,last_name,user_name\n", ["username"], ["user_name"]),
        ("first_name,username,email,phone\n", ["last_name"], ["phone"]),
        ("", ["first_name", "last_name", "username"], []),
    ],
)
async def test_a_wrong_header_names_the_columns(
    clean_db: asyncpg.Pool, header: str, missing: list[str], unknown: list[str]
) -> None:
    org, teacher = await _school(clean_db)
    result, _ = await run(
        clean_db,
        IMPORT,
        import_input(teacher, header + "a,b,c\n" if header else ""),
        principal("teacher", teacher, org),
    )
    ext = extensions(result)
    assert ext["code"] == "BAD_USER_INPUT"
    assert (ext["missingColumns"], ext["unknownColumns"]) == (missing, unknown)
    assert result.errors is not None
    for name in missing + unknown:
        assert name in result.errors[0].message


@pytest.mark.parametrize("tier", ["PRELUDE", "SOLO"])
async def test_small_tiers_stop_at_19_students(clean_db: asyncpg.Pool, tier: str) -> None:
    org, teacher = await _school(clean_db, tier=tier, seats=100)  # seat_count does not raise these tiers
    viewer = principal("teacher", teacher, org)
    at_limit, _ = await run(clean_db, IMPORT, import_input(teacher, roster(19)), viewer)
    assert at_limit.errors is None, at_limit.errors
    assert await count_students(clean_db) == 19
    over, stats = await run(clean_db, IMPORT, import_input(teacher, roster(1, start=20)), viewer)
    ext = extensions(over)
    assert ext == {"code": "QUOTA_EXCEEDED", "limit": 19, "current": 19, "requested": 1, "tier": tier}
    assert stats.statements == 2  # the lock and the count; no insert
    # Existing usernames are skipped, not counted: a re-sent roster still goes through.
    again, _ = await run(clean_db, IMPORT, import_input(teacher, roster(19)), viewer)
    assert again.data is not None and again.data["importStudents"]["skipped"] == 19
    assert await count_students(clean_db) == 19


async def test_the_cap_follows_mlc_tier_overrides(clean_db: asyncpg.Pool) -> None:
    """`{"PRELUDE": {"students": 25}}`: what `mlc-graph tiers` prints is what the import enforces."""
    settings = replace(Settings(), tier_overrides='{"PRELUDE": {"students": 25}}')
    org, teacher = await _school(clean_db, tier="PRELUDE")
    viewer = principal("teacher", teacher, org)
    fits, _ = await run(clean_db, IMPORT, import_input(teacher, roster(22)), viewer, settings=settings)
    assert fits.errors is None, fits.errors
    assert await count_students(clean_db) == 22
    over, _ = await run(
        clean_db, IMPORT, import_input(teacher, roster(4, start=30)), viewer, settings=settings
    )
    assert extensions(over) == {
        "code": "QUOTA_EXCEEDED",
        "limit": 25,
        "current": 22,
        "requested": 4,
        "tier": "PRELUDE",
    }
    assert "limit of 25" in over.errors[0].message  # type: ignore[index]


async def test_twenty_at_once_is_refused_whole_on_a_small_tier(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db, tier="PRELUDE")
    result, _ = await run(
        clean_db, IMPORT, import_input(teacher, roster(20)), principal("teacher", teacher, org)
    )
    assert extensions(result)["requested"] == 20
    assert await count_students(clean_db) == 0


async def test_ensemble_stops_at_its_seat_count(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db, tier="ENSEMBLE", seats=30)
    await make_students(clean_db, org, teacher, 25)
    viewer = principal("teacher", teacher, org)
    over, _ = await run(clean_db, IMPORT, import_input(teacher, roster(6)), viewer)
    assert extensions(over) == {
        "code": "QUOTA_EXCEEDED",
        "limit": 30,
        "current": 25,
        "requested": 6,
        "tier": "ENSEMBLE",
    }
    exact, _ = await run(clean_db, IMPORT, import_input(teacher, roster(5)), viewer)
    assert exact.errors is None and exact.data is not None
    assert exact.data["importStudents"]["created"] == 5
    assert await count_students(clean_db) == 30


async def test_concurrent_imports_cannot_both_pass_the_limit(clean_db: asyncpg.Pool) -> None:
    org, teacher = await _school(clean_db, tier="SOLO")
    viewer = principal("teacher", teacher, org)
    results = await asyncio.gather(
        *(run(clean_db, IMPORT, import_input(teacher, roster(12, prefix=p)), viewer) for p in ("a", "b", "c"))
    )
    codes = sorted(r.errors[0].extensions["code"] if r.errors else "OK" for r, _ in results)  # type: ignore[index]
    assert codes == ["OK", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED"]
    assert await count_students(clean_db) == 12


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("student", "FORBIDDEN"),
        ("another teacher's class", "FORBIDDEN"),
        ("teacher of another organization", "NOT_FOUND"),
        ("anonymous", "UNAUTHENTICATED"),
    ],
)
async def test_who_may_import(clean_db: asyncpg.Pool, case: str, code: str) -> None:
    org, teacher = await _school(clean_db)
    colleague = await make_teacher(clean_db, org, "Col")
    other_org, outsider = await _school(clean_db)
    (student,) = await make_students(clean_db, org, teacher, 1)
    target, viewer = {
        "student": (teacher, principal("student", student, org)),
        "another teacher's class": (colleague, principal("teacher", teacher, org)),
        "teacher of another organization": (outsider, principal("admin", teacher, org)),
        "anonymous": (teacher, None),
    }[case]
    result, _ = await run(clean_db, IMPORT, import_input(target, roster(2)), viewer)
    assert extensions(result)["code"] == code
    assert await count_students(clean_db) == 1
    assert other_org != org


async def test_the_command_line_imports_with_the_same_rules(
    clean_db: asyncpg.Pool,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org, teacher = await _school(clean_db, tier="PRELUDE")
    monkeypatch.setenv("DATABASE_URL", database_url)
    good = tmp_path / "roster.csv"
    good.write_text(roster(19), encoding="utf-8")
    assert await asyncio.to_thread(main, ["import-students", str(good), "--teacher", str(teacher)]) == 0
    printed = capsys.readouterr()
    assert "created 19, skipped 0" in printed.out
    # Captured output is not a terminal: no progress bar (issue 12 item 23), and nothing else on stderr.
    assert printed.err == ""
    over = tmp_path / "more.csv"
    over.write_text(roster(1, start=50), encoding="utf-8")
    assert await asyncio.to_thread(main, ["import-students", str(over), "--teacher", str(teacher)]) == 1
    assert "QUOTA_EXCEEDED" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "Ana,,x,\n", encoding="utf-8")
    assert await asyncio.to_thread(main, ["import-students", str(bad), "--teacher", str(teacher)]) == 1
    err = capsys.readouterr().err
    assert "row 2, last_name: is required" in err and "row 2, username" in err
    assert await count_students(clean_db) == 19
    assert org


def test_roster_parsing_normalises_and_skips_blank_lines() -> None:
    parsed = parse_roster("\ufeffFIRST_NAME,last_name,username\n  Ana , Pérez ,Ana_P\n\n,,\n")
    assert parsed.errors == []
    assert [(s.row, s.first_name, s.last_name, s.username, s.email) for s in parsed.students] == [
        (2, "Ana", "Pérez", "ana_p", None)
    ]


def test_roster_refuses_repeated_columns_and_oversized_files() -> None:
    with pytest.raises(HeaderError, match="repeated column"):
        parse_roster("first_name,last_name,username,username\n")
    parsed = parse_roster(roster(5), max_rows=3)
    assert parsed.errors[-1].message == "the file has more than 3 rows"


async def test_an_import_in_progress_does_not_hold_up_other_writes_of_its_organization(
    clean_db: asyncpg.Pool,
) -> None:
    org, teacher = await _school(clean_db)
    students = await make_students(clean_db, org, teacher, 2)
    _, _, (game,) = await make_catalogue(clean_db, games=1)
    assign = """mutation($input: AssignGameInput!) { assignGame(input: $input) { assignments { id } } }"""
    variables = {
        "input": {
            "gameId": gid("Game", game),
            "studentIds": [gid("Student", s) for s in students],
            "dueDate": "2027-01-01",
        }
    }
    async with clean_db.acquire() as conn, conn.transaction():
        assert await conn.fetchrow(LOCK_TEACHER_ORGANIZATION, teacher) is not None  # an import holds the lock
        # The assignments' foreign key to the organization only needs KEY SHARE, which the lock allows.
        result, _ = await asyncio.wait_for(
            run(clean_db, assign, variables, principal("teacher", teacher, org)), 10
        )
    assert result.errors is None, result.errors
