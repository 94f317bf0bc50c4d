"""assignGame, updateAssignmentStatus, completeAssignment."""

from __future__ import annotations

import datetime as dt

import strawberry

from loaders.assignment_writes import complete_assignment, insert_assignments, update_assignment_status
from mlc_graph.platform.auth import Role
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError, ConflictError, NotFoundError
from resolvers.access import see_assignment, see_game
from resolvers.assignments import Assignment
from resolvers.enums import AssignmentStatus
from resolvers.info import Info
from resolvers.relay import encode_global_id, expect_global_id
from resolvers.write_access import require_staff

MAX_STUDENTS_PER_ASSIGNMENT = 500


@strawberry.input(description="Assign one game to several students of the caller's organization.")
class AssignGameInput:
    game_id: strawberry.ID
    student_ids: list[strawberry.ID] = strawberry.field(
        description=f"1 to {MAX_STUDENTS_PER_ASSIGNMENT} students; any id outside the organization "
        "refuses the whole call (NOT_FOUND) and nothing is assigned."
    )
    due_date: dt.date
    client_mutation_id: str | None = None


@strawberry.type
class AssignGamePayload:
    client_mutation_id: str | None
    assignments: list[Assignment] = strawberry.field(description="One per student, in the order given.")


@strawberry.input
class UpdateAssignmentStatusInput:
    assignment_id: strawberry.ID
    status: AssignmentStatus
    client_mutation_id: str | None = None


@strawberry.input(description="The student finished the assigned game (scores on it complete it too).")
class CompleteAssignmentInput:
    assignment_id: strawberry.ID
    client_mutation_id: str | None = None


@strawberry.type
class AssignmentPayload:
    client_mutation_id: str | None
    assignment: Assignment


def _student_pks(ids: list[strawberry.ID]) -> list[int]:
    if not 1 <= len(ids) <= MAX_STUDENTS_PER_ASSIGNMENT:
        raise BadUserInputError(
            f"studentIds must hold 1 to {MAX_STUDENTS_PER_ASSIGNMENT} ids, got {len(ids)}",
            argument="studentIds",
        )
    # Repeating an id is not asking for two assignments.
    return list(dict.fromkeys(expect_global_id(i, "Student") for i in ids))


async def resolve_assign_game(info: Info, input: AssignGameInput) -> AssignGamePayload:
    viewer = info.context.viewer
    require_staff(viewer, "assign games")
    student_pks = _student_pks(input.student_ids)
    game_pk = expect_global_id(input.game_id, "Game")
    game = see_game(viewer, await info.context.loaders.games_by_id.load(game_pk))
    if game is None:
        raise NotFoundError(f"No Game with id {input.game_id!r}", argument="gameId")
    if game.status != "live":
        raise BadUserInputError(
            f"Only live games can be assigned; this one is {game.status}", argument="gameId"
        )
    teacher_id = viewer.user_id if viewer.role is Role.TEACHER else None
    async with client_errors(), info.context.db.transaction() as tx:
        rows = await insert_assignments(tx, viewer.org_id, game_pk, student_pks, input.due_date, teacher_id)
        missing = set(student_pks) - {row.student_id for row in rows}
        if missing:
            # Raising inside the transaction rolls back the rows the statement did insert.
            raise NotFoundError(
                f"No such student(s): {len(missing)} of the ids given",
                argument="studentIds",
                ids=[encode_global_id("Student", pk) for pk in student_pks if pk in missing],
            )
    info.context.loaders.clear_all()
    return AssignGamePayload(client_mutation_id=input.client_mutation_id, assignments=rows)  # type: ignore[arg-type]


async def resolve_update_assignment_status(
    info: Info, input: UpdateAssignmentStatusInput
) -> AssignmentPayload:
    viewer = info.context.viewer
    require_staff(viewer, "change an assignment's status")
    pk = expect_global_id(input.assignment_id, "Assignment")
    async with client_errors(), info.context.db.transaction() as tx:
        row = await update_assignment_status(tx, pk, viewer.org_id, input.status.value)
    if row is None:
        raise NotFoundError(f"No Assignment with id {input.assignment_id!r}", argument="assignmentId")
    info.context.loaders.clear_all()
    return AssignmentPayload(client_mutation_id=input.client_mutation_id, assignment=row)  # type: ignore[arg-type]


async def resolve_complete_assignment(info: Info, input: CompleteAssignmentInput) -> AssignmentPayload:
    viewer = info.context.viewer
    pk = expect_global_id(input.assignment_id, "Assignment")
    # Students complete their own assignments; staff any of their organization's.
    found = see_assignment(viewer, await info.context.loaders.assignments_by_id.load(pk))
    if found is None:
        raise NotFoundError(f"No Assignment with id {input.assignment_id!r}", argument="assignmentId")
    row = None
    if found.status != "archived":
        async with client_errors(), info.context.db.transaction() as tx:
            # Archived meanwhile: the statement's own status guard makes this None too.
            row = await complete_assignment(tx, pk, viewer.org_id)
    if row is None:
        raise ConflictError("An archived assignment cannot be completed", argument="assignmentId")
    info.context.loaders.clear_all()
    return AssignmentPayload(client_mutation_id=input.client_mutation_id, assignment=row)  # type: ignore[arg-type]


@strawberry.type
class AssignmentMutation:
    assign_game: AssignGamePayload = strawberry.mutation(
        resolver=resolve_assign_game, description="Assign a game to students (teachers and admins)."
    )
    update_assignment_status: AssignmentPayload = strawberry.mutation(
        resolver=resolve_update_assignment_status,
        description="Set an assignment's status (teachers and admins).",
    )
    complete_assignment: AssignmentPayload = strawberry.mutation(
        resolver=resolve_complete_assignment,
        description="Mark an assignment completed (its student, or staff).",
    )
