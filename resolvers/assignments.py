"""Assignment: a game a teacher gave a student, with a due date."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.assignments import AssignmentRow
from resolvers.access import see_student
from resolvers.enums import AssignmentStatus
from resolvers.info import Info
from resolvers.relay import Node, global_id_field

if TYPE_CHECKING:
    from resolvers.games import Game
    from resolvers.students import Student


async def resolve_game(
    root: AssignmentRow, info: Info
) -> Annotated[Game, strawberry.lazy("resolvers.games")] | None:
    # An assigned game stays visible to the class even when it is a draft or retired.
    return await info.context.loaders.games_by_id.load(root.game_id)  # type: ignore[return-value]


async def resolve_student(
    root: AssignmentRow, info: Info
) -> Annotated[Student, strawberry.lazy("resolvers.students")] | None:
    row = await info.context.loaders.students_by_id.load(root.student_id)
    return see_student(info.context.viewer, row)  # type: ignore[return-value]


@strawberry.type(description="A game assigned to a student.")
class Assignment(Node):
    id: strawberry.ID = global_id_field("Assignment")
    status: AssignmentStatus
    due_date: dt.date
    created_at: dt.datetime
    completed_at: dt.datetime | None
    game: Annotated[Game, strawberry.lazy("resolvers.games")] | None = strawberry.field(resolver=resolve_game)
    student: Annotated[Student, strawberry.lazy("resolvers.students")] | None = strawberry.field(
        resolver=resolve_student
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, AssignmentRow)
