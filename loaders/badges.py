"""Badges each student has earned, with the badge itself, in one statement per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loaders.base import by_id
from mlc_graph.platform.db import Executor

SELECT_BADGES_BY_IDS = "SELECT id, name, description, icon_url FROM badges WHERE id = ANY($1::bigint[])"
SELECT_EARNED_BADGES_BY_STUDENTS = """
SELECT sb.student_id, sb.awarded_at, b.id, b.name, b.description, b.icon_url
FROM student_badges sb JOIN badges b ON b.id = sb.badge_id
WHERE sb.student_id = ANY($1::bigint[])
ORDER BY sb.student_id, sb.awarded_at, b.id
"""


@dataclass(frozen=True, slots=True)
class BadgeRow:
    id: int
    name: str
    description: str
    icon_url: str | None


@dataclass(frozen=True, slots=True)
class EarnedBadgeRow:
    student_id: int
    badge: BadgeRow
    awarded_at: datetime


async def fetch_badges_by_ids(db: Executor, ids: Sequence[int]) -> list[BadgeRow | None]:
    rows = await db.fetch(SELECT_BADGES_BY_IDS, list(ids))
    return by_id([BadgeRow(**r) for r in rows], ids)


async def fetch_earned_badges_by_students(
    db: Executor, student_ids: Sequence[int]
) -> list[list[EarnedBadgeRow]]:
    rows = await db.fetch(SELECT_EARNED_BADGES_BY_STUDENTS, list(student_ids))
    earned: dict[int, list[EarnedBadgeRow]] = defaultdict(list)
    for r in rows:
        badge = BadgeRow(r["id"], r["name"], r["description"], r["icon_url"])
        earned[r["student_id"]].append(EarnedBadgeRow(r["student_id"], badge, r["awarded_at"]))
    return [earned.get(s, []) for s in student_ids]
