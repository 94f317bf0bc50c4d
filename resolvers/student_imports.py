"""importStudents (a roster CSV, all or nothing) and createStudent (one student), within the tier's cap."""

from __future__ import annotations

import strawberry

from loaders.student_imports import create_student, import_students
from mlc_graph.domain.roster import HeaderError, RowError, StudentInput, parse_roster, validate_row
from mlc_graph.domain.tiers import tiers_in_effect
from mlc_graph.platform.auth import Role
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError, ForbiddenError
from resolvers.info import Info
from resolvers.relay import expect_global_id
from resolvers.students import Student
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
        tiers = tiers_in_effect(info.context.settings.tier_overrides)
        counts = await import_students(tx, teacher_pk, roster.students, tiers, org_id=viewer.org_id)
    info.context.loaders.clear_all()
    return ImportStudentsPayload(
        client_mutation_id=input.client_mutation_id,
        created=counts.created,
        skipped=counts.skipped,
        errors=[],
    )


@strawberry.input(description="One student for a class: the fields and rules of one roster CSV row.")
class CreateStudentInput:
    teacher_id: strawberry.ID = strawberry.field(description="The class the student joins.")
    first_name: str
    last_name: str
    username: str = strawberry.field(
        description="3-40 characters of a-z, 0-9, '.', '_' or '-' (lower-cased); unique in the organization."
    )
    client_mutation_id: str | None = None


@strawberry.type
class CreateStudentPayload:
    client_mutation_id: str | None
    student: Student


# The roster's column names, as the input spells them. No contact address: the schema names none
# (tests/resolvers/test_schema_snapshot.py keeps it so); the roster import carries one.
_INPUT_FIELDS = {"first_name": "firstName", "last_name": "lastName", "username": "username"}


def _validated(input: CreateStudentInput) -> StudentInput:
    values = {
        "first_name": input.first_name,
        "last_name": input.last_name,
        "username": input.username,
    }
    found = validate_row(1, values, {})
    if isinstance(found, StudentInput):
        return found
    problems = [{"field": _INPUT_FIELDS.get(e.column or "", e.column), "message": e.message} for e in found]
    summary = "; ".join(f"{p['field']} {p['message']}" for p in problems)
    raise BadUserInputError(f"Invalid student: {summary}", problems=problems)


async def resolve_create_student(info: Info, input: CreateStudentInput) -> CreateStudentPayload:
    viewer = info.context.viewer
    require_staff(viewer, "add students")
    teacher_pk = expect_global_id(input.teacher_id, "Teacher")
    if viewer.role is Role.TEACHER and teacher_pk != viewer.user_id:
        raise ForbiddenError("Teachers may only add students to their own class")
    student = _validated(input)
    tiers = tiers_in_effect(info.context.settings.tier_overrides)
    async with client_errors(), info.context.db.transaction() as tx:
        row = await create_student(tx, teacher_pk, student, tiers, viewer.org_id)
    info.context.loaders.clear_all()
    return CreateStudentPayload(client_mutation_id=input.client_mutation_id, student=row)  # type: ignore[arg-type]


@strawberry.type
class StudentImportMutation:
    import_students: ImportStudentsPayload = strawberry.mutation(
        resolver=resolve_import_students,
        description="Import a roster CSV into a class: all rows or none, within the tier's student limit.",
    )
    create_student: CreateStudentPayload = strawberry.mutation(
        resolver=resolve_create_student,
        description="Add one student to a class (teachers to their own, admins to any of their "
        "organization's): the import's validation, a username unique in the organization (CONFLICT), "
        "the tier's student cap (QUOTA_EXCEEDED).",
    )
