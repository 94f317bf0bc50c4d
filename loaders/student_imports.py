"""Adding students: the roster import and createStudent, both under the organization's row lock.

Call `import_students` and `create_student` inside `Executor.transaction()`: the lock, the count and
every insert belong to one transaction, so two concurrent writers cannot both pass the student cap, and
a refused or failed write leaves nothing behind. The cap is the tier table in effect (MLC_TIER_OVERRIDES
applied), the one `mlc-graph tiers` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loaders.students import STUDENT_COLUMNS, StudentRow
from mlc_graph.domain.roster import StudentInput
from mlc_graph.domain.tiers import TierTable, student_limit
from mlc_graph.platform.db import Executor
from mlc_graph.platform.errors import ConflictError, NotFoundError, QuotaExceededError

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
INSERT_STUDENT = f"""
INSERT INTO students (org_id, teacher_id, first_name, last_name, username, email)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (org_id, username) DO NOTHING
RETURNING {STUDENT_COLUMNS}
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class ImportCounts:
    created: int
    skipped: int


@dataclass(frozen=True, slots=True)
class _Room:
    """What the locked organization holds: its id, tier and cap, and the students counted after the lock."""

    org_id: int
    tier: str
    limit: int
    current: int
    existing: int  # of the usernames asked for


async def _lock_and_count(
    db: Executor, teacher_id: int, usernames: list[str], tiers: TierTable, org_id: int | None
) -> _Room:
    org = await db.fetchrow(LOCK_TEACHER_ORGANIZATION, teacher_id)
    if org is None or (org_id is not None and org["id"] != org_id):
        raise NotFoundError(f"No teacher with id {teacher_id}")
    counts = await db.fetchrow(COUNT_STUDENTS_FOR_IMPORT, org["id"], usernames)
    assert counts is not None  # an aggregate without GROUP BY always returns one row
    return _Room(
        org_id=org["id"],
        tier=org["tier"],
        limit=student_limit(org["tier"], org["seat_count"], tiers),
        current=int(counts["current"]),
        existing=int(counts["existing"]),
    )


def _refuse_over_cap(room: _Room, requested: int, what: str) -> None:
    if room.current + requested > room.limit:
        raise QuotaExceededError(
            f"{what} would exceed the {room.tier} limit of {room.limit} students ({room.current} already)",
            limit=room.limit,
            current=room.current,
            requested=requested,
            tier=room.tier,
        )


async def import_students(
    db: Executor,
    teacher_id: int,
    students: Sequence[StudentInput],
    tiers: TierTable,
    org_id: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ImportCounts:
    """Insert validated students into a teacher's class; existing usernames of the org are skipped.

    `org_id`, when given, is the caller's organization: a teacher elsewhere reads as not found.
    Raises QuotaExceededError (limit, current, requested) when the new students would not fit.
    `on_chunk` is called with the number of rows of each chunk written (the CLI's progress bar).
    """
    room = await _lock_and_count(db, teacher_id, [s.username for s in students], tiers, org_id)
    requested = len(students) - room.existing
    _refuse_over_cap(room, requested, f"Importing {requested} new student(s)")
    created = 0
    for start in range(0, len(students), CHUNK_SIZE):
        chunk = students[start : start + CHUNK_SIZE]
        created += int(
            await db.fetchval(
                INSERT_STUDENTS,
                room.org_id,
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


def _taken(username: str) -> ConflictError:
    return ConflictError(f"The username {username!r} is taken in this organization", argument="username")


async def create_student(
    db: Executor, teacher_id: int, student: StudentInput, tiers: TierTable, org_id: int
) -> StudentRow:
    """One validated student into a teacher's class of `org_id`, with the import's cap and uniqueness.

    A username the organization already has is a CONFLICT (the import skips it; one student asked for
    by name is a mistake to report). The ON CONFLICT clause is the backstop the lock makes unreachable.
    """
    room = await _lock_and_count(db, teacher_id, [student.username], tiers, org_id)
    if room.existing:
        raise ConflictError(
            f"The username {student.username!r} is taken in this organization", argument="username"
        )
    _refuse_over_cap(room, 1, "Adding a student")
    row = await db.fetchrow(
        INSERT_STUDENT,
        room.org_id,
        teacher_id,
        student.first_name,
        student.last_name,
        student.username,
        student.email,
    )
    if row is None:
        raise ConflictError(
            f"The username {student.username!r} is taken in this organization", argument="username"
        )
    return StudentRow(*row)
