"""Teacher.students(status:): the active roster a dashboard shows, paged and counted under the filter."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from mlc_graph.execution.compiled import CompiledExecutor
from resolvers.batch import BATCH_RESOLVERS
from resolvers.schema import schema
from tests.execution.test_compiled_differential import compare
from tests.support.factories import make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

ROSTER = """query($id: ID!, $first: Int, $after: String, $status: StudentStatus) { teacher(id: $id) {
  students(first: $first, after: $after, status: $status) {
    totalCount edges { node { id status } } pageInfo { hasNextPage endCursor } } } }"""
# Every teacher of the organization, each with their active roster: one page statement and one count
# statement for all of them (the batching contract: one statement per loader level).
ORGANIZATION_ROSTERS = """{ viewer { organization { teachers(first: 10) { edges { node {
  students(first: 2, status: ACTIVE) { totalCount edges { node { id status } } } } } } } } }"""


async def _class(pool: asyncpg.Pool) -> tuple[int, int, list[int], list[int]]:
    """A class of 4 active and 2 inactive students whose names interleave (Last0001 is both)."""
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    active = await make_students(pool, org, teacher, 4)
    inactive = await make_students(pool, org, teacher, 2, status="inactive")
    return org, teacher, active, inactive


def _roster(result: Any) -> dict[str, Any]:
    assert result.errors is None, result.errors
    roster: dict[str, Any] = result.data["teacher"]["students"]
    return roster


@pytest.mark.parametrize(
    ("status", "expected"),
    [("ACTIVE", "active"), ("INACTIVE", "inactive"), (None, None)],
)
async def test_status_filters_the_page_and_its_total_count(
    clean_db: asyncpg.Pool, status: str | None, expected: str | None
) -> None:
    org, teacher, active, inactive = await _class(clean_db)
    viewer = principal("teacher", teacher, org)
    variables = {"id": gid("Teacher", teacher), "first": 10, "status": status}
    roster = _roster((await run(clean_db, ROSTER, variables, viewer))[0])
    ids = {"active": active, "inactive": inactive, None: active + inactive}[expected]
    assert sorted(e["node"]["id"] for e in roster["edges"]) == sorted(gid("Student", i) for i in ids)
    assert {e["node"]["status"] for e in roster["edges"]} == ({status} if status else {"ACTIVE", "INACTIVE"})
    assert roster["totalCount"] == len(ids)


async def test_active_roster_pages_with_its_cursor_and_counts_every_active_student(
    clean_db: asyncpg.Pool,
) -> None:
    org, teacher, active, _ = await _class(clean_db)
    viewer = principal("teacher", teacher, org)
    seen: list[str] = []
    after = None
    for _ in range(3):
        variables = {"id": gid("Teacher", teacher), "first": 3, "after": after, "status": "ACTIVE"}
        result, _ = await run(clean_db, ROSTER, variables, viewer)
        roster = _roster(result)
        assert roster["totalCount"] == 4  # the whole active class, not the page, on every page
        seen += [e["node"]["id"] for e in roster["edges"]]
        if not roster["pageInfo"]["hasNextPage"]:
            break
        after = roster["pageInfo"]["endCursor"]
    assert seen == [gid("Student", i) for i in active]  # names Last0001..Last0004, in order, no inactive


async def test_active_rosters_of_many_teachers_are_one_page_and_one_count_statement(
    clean_db: asyncpg.Pool,
) -> None:
    org = await make_org(clean_db)
    teachers = [await make_teacher(clean_db, org, f"T{i}", f"Teacher{i}") for i in range(3)]
    actives = [await make_students(clean_db, org, t, n) for t, n in zip(teachers, (3, 1, 0), strict=True)]
    for t in teachers:
        await make_students(clean_db, org, t, 2, status="inactive")
    result, stats = await run(clean_db, ORGANIZATION_ROSTERS, None, principal("admin", teachers[0], org))
    assert result.errors is None and result.data is not None
    rosters = [e["node"]["students"] for e in result.data["viewer"]["organization"]["teachers"]["edges"]]
    assert [r["totalCount"] for r in rosters] == [3, 1, 0]
    assert [[e["node"]["id"] for e in r["edges"]] for r in rosters] == [
        [gid("Student", i) for i in a[:2]] for a in actives
    ]
    students = [text for text in stats.texts if "FROM students" in text]
    assert len(students) == 2, stats.texts  # the three pages in one statement, the counts in another
    assert all("status = 'active'" in text for text in students)  # the literal the partial index needs


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (ROSTER, {"first": 3, "status": "ACTIVE"}),
        (
            "query($id: ID!) { teacher(id: $id) { students(status: ACTIVE) { totalCount edges { node { id } } } } }",
            {},
        ),
        (ORGANIZATION_ROSTERS, None),
    ],
)
async def test_active_roster_takes_the_compiled_path(
    clean_db: asyncpg.Pool, query: str, variables: dict[str, Any] | None
) -> None:
    org, teacher, _, _ = await _class(clean_db)
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    if variables is not None:
        variables = {"id": gid("Teacher", teacher), **variables}
    result = await compare(clean_db, executor, query, variables, principal("admin", teacher, org))
    assert result.took_compiled_path and result.reference == result.compiled
    assert result.compiled_statements == result.reference_statements
    stats = executor.stats
    assert (stats.plans, stats.compiled, stats.bails, stats.fallbacks, stats.unsupported) == (1, 1, 0, 0, 0)
