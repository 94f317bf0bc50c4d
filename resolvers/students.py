"""Student: the learner, with their assignments, scores, badges and best scores."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.pagination import PageArgs
from loaders.students import StudentRow
from resolvers.access import see_organization, see_teacher
from resolvers.directives import ListSize
from resolvers.enums import AssignmentStatus, StudentStatus
from resolvers.info import Info
from resolvers.relay import (
    Connection,
    Node,
    connection_from_page,
    expect_global_id,
    global_id_field,
    page_args,
)

if TYPE_CHECKING:
    from resolvers.assignments import Assignment
    from resolvers.badges import EarnedBadge
    from resolvers.organizations import Organization
    from resolvers.scores import BestScore, Score
    from resolvers.teachers import Teacher


def resolve_display_name(root: StudentRow) -> str:
    return f"{root.first_name} {root.last_name[:1]}."


async def resolve_teacher(
    root: StudentRow, info: Info
) -> Annotated[Teacher, strawberry.lazy("resolvers.teachers")] | None:
    row = await info.context.loaders.teachers_by_id.load(root.teacher_id)
    return see_teacher(info.context.viewer, row)  # type: ignore[return-value]


async def resolve_organization(
    root: StudentRow, info: Info
) -> Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None:
    row = await info.context.loaders.organizations_by_id.load(root.org_id)
    return see_organization(info.context.viewer, row)  # type: ignore[return-value]


async def resolve_assignments(
    root: StudentRow,
    info: Info,
    first: int | None = 10,
    after: str | None = None,
    status: AssignmentStatus | None = None,
) -> Connection[Annotated[Assignment, strawberry.lazy("resolvers.assignments")]]:
    args = page_args(first, after, (dt.date, int), status.value if status is not None else None, default=10)
    loaders = info.context.loaders
    page = await loaders.assignment_pages_by_student.load((root.id, args))

    async def count() -> int:
        return await loaders.assignment_count_by_student.load((root.id, args.filter))

    return connection_from_page(page, after is not None, count)


async def resolve_scores(
    root: StudentRow,
    info: Info,
    first: int | None = 10,
    after: str | None = None,
    game_id: strawberry.ID | None = None,
) -> Connection[Annotated[Score, strawberry.lazy("resolvers.scores")]]:
    game_pk = expect_global_id(game_id, "Game") if game_id is not None else None
    args: PageArgs = page_args(first, after, (dt.datetime, int), game_pk, default=10)
    loaders = info.context.loaders
    page = await loaders.score_pages_by_student.load((root.id, args))

    async def count() -> int:
        return await loaders.score_count_by_student.load((root.id, game_pk))

    return connection_from_page(page, after is not None, count)


async def resolve_badges(
    root: StudentRow, info: Info
) -> list[Annotated[EarnedBadge, strawberry.lazy("resolvers.badges")]]:
    return await info.context.loaders.earned_badges_by_student.load(root.id)  # type: ignore[return-value]


async def resolve_best_score(
    root: StudentRow, info: Info, game_id: strawberry.ID
) -> Annotated[BestScore, strawberry.lazy("resolvers.scores")] | None:
    game_pk = expect_global_id(game_id, "Game")
    return await info.context.loaders.best_score_by_student_game.load((root.id, game_pk))  # type: ignore[return-value]


@strawberry.type(description="A learner in one teacher's class.")
class Student(Node):
    id: strawberry.ID = global_id_field("Student")
    first_name: str
    last_name: str
    username: str = strawberry.field(description="Unique within the organization.")
    avatar_url: str | None
    status: StudentStatus
    last_active_at: dt.datetime | None
    created_at: dt.datetime
    display_name: str = strawberry.field(
        resolver=resolve_display_name, description="First name and last initial, e.g. 'Ana P.'."
    )
    teacher: Annotated[Teacher, strawberry.lazy("resolvers.teachers")] | None = strawberry.field(
        resolver=resolve_teacher
    )
    organization: Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None = (
        strawberry.field(resolver=resolve_organization)
    )
    assignments: Connection[Annotated[Assignment, strawberry.lazy("resolvers.assignments")]] = (
        strawberry.field(
            resolver=resolve_assignments,
            description="Assignments, soonest due first.",
            directives=[ListSize(slicing_arguments=["first"])],
        )
    )
    scores: Connection[Annotated[Score, strawberry.lazy("resolvers.scores")]] = strawberry.field(
        resolver=resolve_scores,
        description="Score history, newest first; optionally of one game.",
        directives=[ListSize(slicing_arguments=["first"])],
    )
    badges: list[Annotated[EarnedBadge, strawberry.lazy("resolvers.badges")]] = strawberry.field(
        resolver=resolve_badges,
        description="Badges earned, in the order they were awarded.",
        directives=[ListSize(assumed_size=20)],
    )
    best_score: Annotated[BestScore, strawberry.lazy("resolvers.scores")] | None = strawberry.field(
        resolver=resolve_best_score, description="Best challenge-stage score in a game, if any."
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, StudentRow)
