"""Assignments: by id, and each student's assignments as keyset pages (soonest due first)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from loaders.base import by_id, check_columns
from loaders.pagination import (
    EMPTY_PAGE,
    Page,
    PageArgs,
    counts_in_key_order,
    group_by_args,
    pages_by_parent,
    parents_by_filter,
)
from mlc_graph.platform.db import Executor

_COLUMNS = "id, org_id, student_id, game_id, teacher_id, status, due_date, created_at, completed_at"

SELECT_ASSIGNMENTS_BY_IDS = f"SELECT {_COLUMNS} FROM assignments WHERE id = ANY($1::bigint[])"  # noqa: S608

_PAGE = f"""
SELECT a.* FROM unnest($1::bigint[]) AS p(student_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM assignments
    WHERE student_id = p.student_id {{status}} {{after}}
    ORDER BY due_date, id
    LIMIT $2
) a
"""  # noqa: S608
_AFTER_NO_STATUS = "AND (due_date, id) > ($3::date, $4::bigint)"
_AFTER_WITH_STATUS = "AND (due_date, id) > ($4::date, $5::bigint)"
SELECT_ASSIGNMENT_PAGES = _PAGE.format(status="", after="")
SELECT_ASSIGNMENT_PAGES_AFTER = _PAGE.format(status="", after=_AFTER_NO_STATUS)
SELECT_ASSIGNMENT_PAGES_BY_STATUS = _PAGE.format(status="AND status = $3::text", after="")
SELECT_ASSIGNMENT_PAGES_BY_STATUS_AFTER = _PAGE.format(
    status="AND status = $3::text", after=_AFTER_WITH_STATUS
)

_COUNT = """
SELECT student_id, count(*) AS n FROM assignments
WHERE student_id = ANY($1::bigint[]) {status} GROUP BY student_id
"""
COUNT_ASSIGNMENTS_BY_STUDENTS = _COUNT.format(status="")
COUNT_ASSIGNMENTS_BY_STUDENTS_AND_STATUS = _COUNT.format(status="AND status = $2::text")


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class AssignmentRow:
    id: int
    org_id: int
    student_id: int
    game_id: int
    teacher_id: int | None
    status: str
    due_date: date
    created_at: datetime
    completed_at: datetime | None

    @property
    def keyset(self) -> tuple[date, int]:
        return (self.due_date, self.id)


check_columns(AssignmentRow, _COLUMNS)


async def fetch_assignments_by_ids(db: Executor, ids: Sequence[int]) -> list[AssignmentRow | None]:
    rows = await db.fetch(SELECT_ASSIGNMENTS_BY_IDS, list(ids))
    return by_id([AssignmentRow(*r) for r in rows], ids)


async def fetch_assignment_pages_by_students(
    db: Executor, keys: Sequence[tuple[int, PageArgs]]
) -> list[Page[AssignmentRow]]:
    """PageArgs.filter is the status (lower-case) or None for every status."""
    found: dict[tuple[int, PageArgs], Page[AssignmentRow]] = {}
    for args, student_ids in group_by_args(keys).items():
        limit = args.first + 1
        if args.filter is None:
            if args.after is None:
                rows = await db.fetch(SELECT_ASSIGNMENT_PAGES, student_ids, limit)
            else:
                rows = await db.fetch(SELECT_ASSIGNMENT_PAGES_AFTER, student_ids, limit, *args.after)
        elif args.after is None:
            rows = await db.fetch(SELECT_ASSIGNMENT_PAGES_BY_STATUS, student_ids, limit, args.filter)
        else:
            rows = await db.fetch(
                SELECT_ASSIGNMENT_PAGES_BY_STATUS_AFTER, student_ids, limit, args.filter, *args.after
            )
        pages = pages_by_parent([AssignmentRow(*r) for r in rows], lambda a: a.student_id, args.first)
        for student_id in student_ids:
            found[(student_id, args)] = pages.get(student_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_assignments_by_students(db: Executor, keys: Sequence[tuple[int, Hashable]]) -> list[int]:
    """Every assignment of each (student id, status or None) key, not just one page."""
    counted: dict[tuple[int, Hashable], int] = {}
    for status, student_ids in parents_by_filter(keys).items():
        if status is None:
            rows = await db.fetch(COUNT_ASSIGNMENTS_BY_STUDENTS, student_ids)
        else:
            rows = await db.fetch(COUNT_ASSIGNMENTS_BY_STUDENTS_AND_STATUS, student_ids, status)
        counted.update(((r["student_id"], status), r["n"]) for r in rows)
    return counts_in_key_order(keys, counted)
