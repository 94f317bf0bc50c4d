"""Aggregation reports: per-student progress of one teacher's class."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loaders.students import StudentRow
from mlc_graph.platform.db import Executor

SELECT_CLASS_PROGRESS = """
SELECT s.id, s.org_id, s.teacher_id, s.first_name, s.last_name, s.username, s.avatar_url, s.status,
       s.last_active_at, s.created_at,
       coalesce(a.total, 0) AS assignments_total,
       coalesce(a.completed, 0) AS assignments_completed,
       sc.average_score,
       sc.last_score_at
FROM students s
LEFT JOIN LATERAL (
    SELECT count(*) AS total, count(*) FILTER (WHERE status = 'completed') AS completed
    FROM assignments WHERE student_id = s.id
) a ON true
LEFT JOIN LATERAL (
    SELECT avg(score)::float8 AS average_score, max(created_at) AS last_score_at
    FROM scores WHERE student_id = s.id
) sc ON true
WHERE s.teacher_id = $1
ORDER BY s.last_name, s.first_name, s.id
"""


@dataclass(frozen=True, slots=True)
class StudentProgressRow:
    student: StudentRow
    assignments_total: int
    assignments_completed: int
    average_score: float | None
    last_active_at: datetime | None


async def fetch_class_progress(db: Executor, teacher_id: int) -> list[StudentProgressRow]:
    rows = await db.fetch(SELECT_CLASS_PROGRESS, teacher_id)
    progress: list[StudentProgressRow] = []
    for r in rows:
        student = StudentRow(
            r["id"],
            r["org_id"],
            r["teacher_id"],
            r["first_name"],
            r["last_name"],
            r["username"],
            r["avatar_url"],
            r["status"],
            r["last_active_at"],
            r["created_at"],
        )
        moments = [m for m in (r["last_active_at"], r["last_score_at"]) if m is not None]
        progress.append(
            StudentProgressRow(
                student,
                r["assignments_total"],
                r["assignments_completed"],
                r["average_score"],
                max(moments) if moments else None,
            )
        )
    return progress
