"""Teachers: by id, and each organization's teachers as keyset pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loaders.base import by_id, check_columns
from loaders.pagination import EMPTY_PAGE, Page, PageArgs, group_by_args, pages_by_parent
from mlc_graph.platform.db import Executor

_COLUMNS = "id, org_id, first_name, last_name, created_at"

SELECT_TEACHERS_BY_IDS = f"SELECT {_COLUMNS} FROM teachers WHERE id = ANY($1::bigint[])"  # noqa: S608
_PAGE = f"""
SELECT t.* FROM unnest($1::bigint[]) AS p(org_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM teachers
    WHERE org_id = p.org_id {{after}}
    ORDER BY last_name, first_name, id
    LIMIT $2
) t
"""  # noqa: S608
SELECT_TEACHER_PAGES_BY_ORGS = _PAGE.format(after="")
SELECT_TEACHER_PAGES_BY_ORGS_AFTER = _PAGE.format(
    after="AND (last_name, first_name, id) > ($3::text, $4::text, $5::bigint)"
)
COUNT_TEACHERS_BY_ORGS = (
    "SELECT org_id, count(*) AS n FROM teachers WHERE org_id = ANY($1::bigint[]) GROUP BY org_id"
)


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class TeacherRow:
    id: int
    org_id: int
    first_name: str
    last_name: str
    created_at: datetime

    @property
    def keyset(self) -> tuple[str, str, int]:
        return (self.last_name, self.first_name, self.id)


check_columns(TeacherRow, _COLUMNS)


async def fetch_teachers_by_ids(db: Executor, ids: Sequence[int]) -> list[TeacherRow | None]:
    rows = await db.fetch(SELECT_TEACHERS_BY_IDS, list(ids))
    return by_id([TeacherRow(*r) for r in rows], ids)


async def fetch_teacher_pages_by_orgs(
    db: Executor, keys: Sequence[tuple[int, PageArgs]]
) -> list[Page[TeacherRow]]:
    found: dict[tuple[int, PageArgs], Page[TeacherRow]] = {}
    for args, org_ids in group_by_args(keys).items():
        if args.after is None:
            rows = await db.fetch(SELECT_TEACHER_PAGES_BY_ORGS, org_ids, args.first + 1)
        else:
            rows = await db.fetch(SELECT_TEACHER_PAGES_BY_ORGS_AFTER, org_ids, args.first + 1, *args.after)
        pages = pages_by_parent([TeacherRow(*r) for r in rows], lambda t: t.org_id, args.first)
        for org_id in org_ids:
            found[(org_id, args)] = pages.get(org_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_teachers_by_orgs(db: Executor, org_ids: Sequence[int]) -> list[int]:
    rows = await db.fetch(COUNT_TEACHERS_BY_ORGS, list(org_ids))
    counts = {r["org_id"]: r["n"] for r in rows}
    return [counts.get(o, 0) for o in org_ids]
