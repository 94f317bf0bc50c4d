"""Students: by id, and each teacher's class as keyset pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loaders.base import by_id, check_columns
from loaders.pagination import EMPTY_PAGE, Page, PageArgs, group_by_args, pages_by_parent
from mlc_graph.platform.db import Executor

# password_hash and email are never selected: they cannot leak through any resolver.
_COLUMNS = (
    "id, org_id, teacher_id, first_name, last_name, username, avatar_url, status, last_active_at, created_at"
)
STUDENT_COLUMNS = _COLUMNS  # what a write that returns a StudentRow selects

SELECT_STUDENTS_BY_IDS = f"SELECT {_COLUMNS} FROM students WHERE id = ANY($1::bigint[])"  # noqa: S608

_PAGE = f"""
SELECT s.* FROM unnest($1::bigint[]) AS p(teacher_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM students
    WHERE teacher_id = p.teacher_id {{after}}
    ORDER BY last_name, first_name, id
    LIMIT $2
) s
"""  # noqa: S608
SELECT_STUDENT_PAGES_BY_TEACHERS = _PAGE.format(after="")
SELECT_STUDENT_PAGES_BY_TEACHERS_AFTER = _PAGE.format(
    after="AND (last_name, first_name, id) > ($3::text, $4::text, $5::bigint)"
)
COUNT_STUDENTS_BY_TEACHERS = """
SELECT teacher_id, count(*) AS n FROM students WHERE teacher_id = ANY($1::bigint[]) GROUP BY teacher_id
"""


@dataclass(frozen=True, slots=True)
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
    found: dict[tuple[int, PageArgs], Page[StudentRow]] = {}
    for args, teacher_ids in group_by_args(keys).items():
        if args.after is None:
            rows = await db.fetch(SELECT_STUDENT_PAGES_BY_TEACHERS, teacher_ids, args.first + 1)
        else:
            rows = await db.fetch(
                SELECT_STUDENT_PAGES_BY_TEACHERS_AFTER, teacher_ids, args.first + 1, *args.after
            )
        pages = pages_by_parent([StudentRow(*r) for r in rows], lambda s: s.teacher_id, args.first)
        for teacher_id in teacher_ids:
            found[(teacher_id, args)] = pages.get(teacher_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_students_by_teachers(db: Executor, teacher_ids: Sequence[int]) -> list[int]:
    rows = await db.fetch(COUNT_STUDENTS_BY_TEACHERS, list(teacher_ids))
    counts = {r["teacher_id"]: r["n"] for r in rows}
    return [counts.get(t, 0) for t in teacher_ids]
