"""importStudents: a roster CSV into a teacher's class, all or nothing, within the tier's student limit."""

from __future__ import annotations

import strawberry

from loaders.student_imports import import_students
from mlc_graph.domain.roster import HeaderError, RowError, parse_roster
from mlc_graph.platform.auth import Role
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError, ForbiddenError
from resolvers.info import Info
from resolvers.relay import expect_global_id
from resolvers.write_access import require_staff


@strawberry.input(description="A roster: CSV text with a header row.")
class ImportStudentsInput:
    teacher_id: strawberry.ID = strawberry.field(description="The class the students join.")
    csv: str = strawberry.field(
        description="A header row naming the columns (first_name, last_name, username, and one optional "
        "contact column: see docs/WRITES.md), then one student per line."
    )
    client_mutation_id: str | None = None


@strawberry.type(description="A problem with one cell or row of the CSV.")
class ImportRowError:
    row: int = strawberry.field(description="As a spreadsheet numbers it: the header is row 1.")
    column: str | None
    message: str


@strawberry.type(description="With any error, nothing was imported: fix every listed row and resend.")
class ImportStudentsPayload:
    client_mutation_id: str | None
    created: int
    skipped: int = strawberry.field(description="Rows whose username already exists in the organization.")
    errors: list[ImportRowError] = strawberry.field(
        description="Every problem of every row at once; when not empty, nothing was imported."
    )


def _row_error(error: RowError) -> ImportRowError:
    return ImportRowError(row=error.row, column=error.column, message=error.message)


async def resolve_import_students(info: Info, input: ImportStudentsInput) -> ImportStudentsPayload:
    viewer = info.context.viewer
    require_staff(viewer, "import students")
    teacher_pk = expect_global_id(input.teacher_id, "Teacher")
    if viewer.role is Role.TEACHER and teacher_pk != viewer.user_id:
        raise ForbiddenError("Teachers may only import students into their own class")
    try:
        roster = parse_roster(input.csv)
    except HeaderError as exc:
        raise BadUserInputError(
            str(exc), argument="csv", missingColumns=exc.missing, unknownColumns=exc.unknown
        ) from exc
    if roster.errors:
        return ImportStudentsPayload(
            client_mutation_id=input.client_mutation_id,
            created=0,
            skipped=0,
            errors=[_row_error(e) for e in roster.errors],
        )
    async with client_errors(), info.context.db.transaction() as tx:
        counts = await import_students(tx, teacher_pk, roster.students, org_id=viewer.org_id)
    info.context.loaders.clear_all()
    return ImportStudentsPayload(
        client_mutation_id=input.client_mutation_id,
        created=counts.created,
        skipped=counts.skipped,
        errors=[],
    )


@strawberry.type
class StudentImportMutation:
    import_students: ImportStudentsPayload = strawberry.mutation(
        resolver=resolve_import_students,
        description="Import a roster CSV into a class: all rows or none, within the tier's student limit.",
    )
