"""Assignment writes: bulk assignment in one statement, status changes, completion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from loaders.assignments import AssignmentRow
from mlc_graph.platform.db import Executor

_RETURNING = "id, org_id, student_id, game_id, teacher_id, status, due_date, created_at, completed_at"

# One statement for the whole class: students outside the organization simply produce no row, and the
# caller compares what came back with what it asked for (and rolls back when anything is missing).
# $4 is the assigning teacher; admins without a class of their own leave it null and the student's
# teacher is recorded.
INSERT_ASSIGNMENTS = f"""
INSERT INTO assignments (org_id, student_id, game_id, teacher_id, due_date)
SELECT s.org_id, s.id, $3, coalesce($4::bigint, s.teacher_id), $5
FROM unnest($1::bigint[]) WITH ORDINALITY AS w(student_id, position)
JOIN students s ON s.id = w.student_id AND s.org_id = $2
ORDER BY w.position
RETURNING {_RETURNING}
"""  # noqa: S608
# completed_at follows the status: set once on completion, cleared on reactivation, kept on archiving.
UPDATE_ASSIGNMENT_STATUS = f"""
UPDATE assignments
SET status = $3::text,
    completed_at = CASE $3::text WHEN 'completed' THEN coalesce(completed_at, now())
                                 WHEN 'active' THEN NULL
                                 ELSE completed_at END
WHERE id = $1 AND org_id = $2
RETURNING {_RETURNING}
"""  # noqa: S608
# Completing twice keeps the first completion time; archived assignments stay archived.
COMPLETE_ASSIGNMENT = f"""
UPDATE assignments SET status = 'completed', completed_at = coalesce(completed_at, now())
WHERE id = $1 AND org_id = $2 AND status <> 'archived'
RETURNING {_RETURNING}
"""  # noqa: S608


async def insert_assignments(
    db: Executor,
    org_id: int,
    game_id: int,
    student_ids: Sequence[int],
    due_date: date,
    teacher_id: int | None,
) -> list[AssignmentRow]:
    """Assign a game to the students of `org_id` among `student_ids`, in the order given."""
    rows = await db.fetch(INSERT_ASSIGNMENTS, list(student_ids), org_id, game_id, teacher_id, due_date)
    return [AssignmentRow(**r) for r in rows]


async def update_assignment_status(
    db: Executor, assignment_id: int, org_id: int, status: str
) -> AssignmentRow | None:
    row = await db.fetchrow(UPDATE_ASSIGNMENT_STATUS, assignment_id, org_id, status)
    return None if row is None else AssignmentRow(**row)


async def complete_assignment(db: Executor, assignment_id: int, org_id: int) -> AssignmentRow | None:
    """The completed assignment; None when it does not exist in the organization or is archived."""
    row = await db.fetchrow(COMPLETE_ASSIGNMENT, assignment_id, org_id)
    return None if row is None else AssignmentRow(**row)
