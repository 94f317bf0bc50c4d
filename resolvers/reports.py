"""Reports: aggregations over a class (more expensive than plain reads; priced accordingly)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.reports import StudentProgressRow, fetch_class_progress
from mlc_graph.platform.errors import ForbiddenError, NotFoundError
from resolvers.access import see_teacher
from resolvers.directives import ListSize
from resolvers.info import Info
from resolvers.relay import expect_global_id

if TYPE_CHECKING:
    from resolvers.students import Student
    from resolvers.teachers import Teacher


@strawberry.type(description="One student's progress in their class.")
class StudentProgress:
    student: Annotated[Student, strawberry.lazy("resolvers.students")]
    assignments_total: int
    assignments_completed: int
    average_score: float | None = strawberry.field(description="Mean of all the student's scores.")
    last_active_at: dt.datetime | None = strawberry.field(
        description="Latest of last sign-in activity and last score."
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, StudentProgressRow)


def resolve_completion_rate(root: ClassProgress) -> float | None:
    rows: list[StudentProgressRow] = root.students  # type: ignore[assignment]
    total = sum(s.assignments_total for s in rows)
    done = sum(s.assignments_completed for s in rows)
    return done / total if total else None


@strawberry.type(description="A teacher's class at a glance: per-student progress.")
class ClassProgress:
    teacher: Annotated[Teacher, strawberry.lazy("resolvers.teachers")]
    # Priced as a class of 50 (classes are 20-40 students); the report's own weight is on Query.classProgress.
    students: list[StudentProgress] = strawberry.field(directives=[ListSize(assumed_size=50)])
    completion_rate: float | None = strawberry.field(
        resolver=resolve_completion_rate,
        description="Completed assignments over all assignments of the class (0 to 1).",
    )


async def resolve_class_progress(info: Info, teacher_id: strawberry.ID) -> ClassProgress:
    viewer = info.context.viewer
    teacher = see_teacher(
        viewer, await info.context.loaders.teachers_by_id.load(expect_global_id(teacher_id, "Teacher"))
    )
    if teacher is None:
        raise NotFoundError(f"No Teacher with id {teacher_id!r}")
    if not viewer.is_staff:
        raise ForbiddenError("Class progress is for teachers and admins")
    rows = await fetch_class_progress(info.context.db, teacher.id)
    for row in rows:
        info.context.loaders.students_by_id.prime(row.student.id, row.student)
    return ClassProgress(teacher=teacher, students=rows)  # type: ignore[arg-type]
