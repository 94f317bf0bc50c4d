"""Students: by id, and each teacher's class as keyset pages."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

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

# password_hash and email are never selected: they cannot leak through any resolver.
_COLUMNS = (
    "id, org_id, teacher_id, first_name, last_name, username, avatar_url, status, last_active_at, created_at"
)
STUDENT_COLUMNS = _COLUMNS  # what a write that returns a StudentRow selects

SELECT_STUDENTS_BY_IDS = f"SELECT {_COLUMNS} FROM students WHERE id = ANY($1::bigint[])"  # noqa: S608

# The status is written into the statement as a literal, never bound: the active roster's index
# (idx_students_teacher_active_name, partial on status = 'active') is usable only when the planner can
# prove its predicate from the query, and a generic plan for `status = $n` cannot.
_STATUS = {None: "", "active": "AND status = 'active'", "inactive": "AND status = 'inactive'"}
_PAGE = f"""
SELECT s.* FROM unnest($1::bigint[]) AS p(teacher_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM students
    WHERE teacher_id = p.teacher_id {{status}} {{after}}
    ORDER BY last_name, first_name, id
    LIMIT $2
) s
"""  # noqa: S608
_AFTER = "AND (last_name, first_name, id) > ($3::text, $4::text, $5::bigint)"
_COUNT = """
SELECT teacher_id, count(*) AS n FROM students
WHERE teacher_id = ANY($1::bigint[]) {status} GROUP BY teacher_id
"""
# Every (status, after?) shape's statement, built once at import from the constant fragments above.
STUDENT_PAGE_STATEMENTS: dict[tuple[str | None, bool], str] = {
    (status, after): _PAGE.format(status=clause, after=_AFTER if after else "")
    for status, clause in _STATUS.items()
    for after in (False, True)
}
COUNT_STUDENTS_STATEMENTS: dict[str | None, str] = {
    status: _COUNT.format(status=clause) for status, clause in _STATUS.items()
}
# The whole roster's first page and count, as the floor (bench/floor.py) runs them.
SELECT_STUDENT_PAGES_BY_TEACHERS = STUDENT_PAGE_STATEMENTS[(None, False)]
COUNT_STUDENTS_BY_TEACHERS = COUNT_STUDENTS_STATEMENTS[None]


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class StudentRow:
    id: int
    org_id: int
    teacher_id: int
    first_name: str
    last_name: str
    username: str
    avatar_url: str | None
    status: str
    last_active_at: datetime | None
    created_at: datetime

    @property
    def keyset(self) -> tuple[str, str, int]:
        return (self.last_name, self.first_name, self.id)


check_columns(StudentRow, _COLUMNS)


async def fetch_students_by_ids(db: Executor, ids: Sequence[int]) -> list[StudentRow | None]:
    rows = await db.fetch(SELECT_STUDENTS_BY_IDS, list(ids))
    return by_id([StudentRow(*r) for r in rows], ids)


async def fetch_student_pages_by_teachers(
    db: Executor, keys: Sequence[tuple[int, PageArgs]]
) -> list[Page[StudentRow]]:
    """PageArgs.filter is the status (lower-case) or None for every status."""
    found: dict[tuple[int, PageArgs], Page[StudentRow]] = {}
    for args, teacher_ids in group_by_args(keys).items():
        sql = STUDENT_PAGE_STATEMENTS[(_status(args.filter), args.after is not None)]
        rows = await db.fetch(sql, teacher_ids, args.first + 1, *(args.after or ()))
        pages = pages_by_parent([StudentRow(*r) for r in rows], lambda s: s.teacher_id, args.first)
        for teacher_id in teacher_ids:
            found[(teacher_id, args)] = pages.get(teacher_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_students_by_teachers(db: Executor, keys: Sequence[tuple[int, Hashable]]) -> list[int]:
    """Every student of each (teacher id, status or None) key, not just one page."""
    counted: dict[tuple[int, Hashable], int] = {}
    for status, teacher_ids in parents_by_filter(keys).items():
        rows = await db.fetch(COUNT_STUDENTS_STATEMENTS[_status(status)], teacher_ids)
        counted.update(((r["teacher_id"], status), r["n"]) for r in rows)
    return counts_in_key_order(keys, counted)


def _status(filter_: Hashable) -> str | None:
    """The status a key filters on: one the statements were built for, or None for every status."""
    if filter_ is None or (isinstance(filter_, str) and filter_ in _STATUS):
        return filter_
    raise ValueError(f"unknown student status {filter_!r}")
