"""Roster import: quota check under the organization's row lock, then chunked ON CONFLICT DO NOTHING inserts.

Call `import_students` inside `Executor.transaction()`: the lock, the count and every chunk belong to
one transaction, so two concurrent imports cannot both pass the quota check, and a refused or failed
import leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlc_graph.domain.roster import StudentInput
from mlc_graph.domain.tiers import student_limit
from mlc_graph.platform.db import Executor
from mlc_graph.platform.errors import NotFoundError, QuotaExceededError

CHUNK_SIZE = 500

# NO KEY UPDATE, the weakest row lock that still conflicts with itself: two imports of one organization
# queue here, while other writes' foreign-key checks on this row (a new assignment or teacher of the same
# organization takes KEY SHARE on it) do not wait for an import to finish, as they would behind FOR UPDATE.
LOCK_TEACHER_ORGANIZATION = """
SELECT o.id, o.tier, o.seat_count
FROM teachers t JOIN organizations o ON o.id = t.org_id
WHERE t.id = $1
FOR NO KEY UPDATE OF o
"""
# A separate statement from the lock on purpose: under READ COMMITTED each statement takes a new
# snapshot, so counting after the lock is granted sees the students a concurrent import just committed.
# Counting inside the locking statement would use the snapshot taken before the lock wait.
COUNT_STUDENTS_FOR_IMPORT = """
SELECT count(*) AS current, count(*) FILTER (WHERE username = ANY($2::text[])) AS existing
FROM students WHERE org_id = $1
"""
INSERT_STUDENTS = """
WITH inserted AS (
    INSERT INTO students (org_id, teacher_id, first_name, last_name, username, email)
    SELECT $1, $2, r.first_name, r.last_name, r.username, r.email
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS r(first_name, last_name, username, email)
    ON CONFLICT (org_id, username) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


@dataclass(frozen=True, slots=True)
class ImportCounts:
    created: int
    skipped: int


async def import_students(
    db: Executor,
    teacher_id: int,
    students: Sequence[StudentInput],
    org_id: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ImportCounts:
    """Insert validated students into a teacher's class; existing usernames of the org are skipped.

    `org_id`, when given, is the caller's organization: a teacher elsewhere reads as not found.
    Raises QuotaExceededError (limit, current, requested) when the new students would not fit.
    `on_chunk` is called with the number of rows of each chunk written (the CLI's progress bar).
    """
    org = await db.fetchrow(LOCK_TEACHER_ORGANIZATION, teacher_id)
    if org is None or (org_id is not None and org["id"] != org_id):
        raise NotFoundError(f"No teacher with id {teacher_id}")
    usernames = [s.username for s in students]
    counts = await db.fetchrow(COUNT_STUDENTS_FOR_IMPORT, org["id"], usernames)
    assert counts is not None  # an aggregate without GROUP BY always returns one row
    current, existing = int(counts["current"]), int(counts["existing"])
    requested = len(students) - existing
    limit = student_limit(org["tier"], org["seat_count"])
    if current + requested > limit:
        raise QuotaExceededError(
            f"Importing {requested} new student(s) would exceed the {org['tier']} limit of {limit} "
            f"students ({current} already)",
            limit=limit,
            current=current,
            requested=requested,
            tier=org["tier"],
        )
    created = 0
    for start in range(0, len(students), CHUNK_SIZE):
        chunk = students[start : start + CHUNK_SIZE]
        created += int(
            await db.fetchval(
                INSERT_STUDENTS,
                org["id"],
                teacher_id,
                [s.first_name for s in chunk],
                [s.last_name for s in chunk],
                [s.username for s in chunk],
                [s.email for s in chunk],
            )
        )
        if on_chunk is not None:
            on_chunk(len(chunk))
    return ImportCounts(created=created, skipped=len(students) - created)
