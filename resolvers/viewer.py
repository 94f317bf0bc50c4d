"""Viewer: who is signed in, and the node lookup by global id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from mlc_graph.platform.auth import Role as AuthRole
from resolvers.access import (
    see_assignment,
    see_game,
    see_organization,
    see_score,
    see_student,
    see_teacher,
)
from resolvers.enums import Role
from resolvers.info import Info
from resolvers.realtime import RateLimit, resolve_rate_limit
from resolvers.relay import Node, decode_global_id

if TYPE_CHECKING:
    from resolvers.organizations import Organization
    from resolvers.students import Student
    from resolvers.teachers import Teacher


async def resolve_viewer_student(
    info: Info,
) -> Annotated[Student, strawberry.lazy("resolvers.students")] | None:
    viewer = info.context.viewer
    if viewer.role is not AuthRole.STUDENT:
        return None
    row = await info.context.loaders.students_by_id.load(viewer.user_id)
    return see_student(viewer, row)  # type: ignore[return-value]


async def resolve_viewer_teacher(
    info: Info,
) -> Annotated[Teacher, strawberry.lazy("resolvers.teachers")] | None:
    viewer = info.context.viewer
    if viewer.role is AuthRole.STUDENT:
        return None
    row = await info.context.loaders.teachers_by_id.load(viewer.user_id)
    return see_teacher(viewer, row)  # type: ignore[return-value]


async def resolve_viewer_organization(
    info: Info,
) -> Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None:
    viewer = info.context.viewer
    row = await info.context.loaders.organizations_by_id.load(viewer.org_id)
    return see_organization(viewer, row)  # type: ignore[return-value]


@strawberry.type(description="The signed-in user.")
class Viewer:
    role: Role
    student: Annotated[Student, strawberry.lazy("resolvers.students")] | None = strawberry.field(
        resolver=resolve_viewer_student, description="The signed-in student (students only)."
    )
    teacher: Annotated[Teacher, strawberry.lazy("resolvers.teachers")] | None = strawberry.field(
        resolver=resolve_viewer_teacher,
        description="The signed-in teacher (teachers and admins with a teacher record).",
    )
    organization: Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None = (
        strawberry.field(resolver=resolve_viewer_organization, description="The viewer's organization.")
    )
    rate_limit: RateLimit | None = strawberry.field(
        resolver=resolve_rate_limit,
        description="The viewer's requests and cost points this hour (null when quotas are not enabled).",
    )


def resolve_viewer(info: Info) -> Viewer:
    return Viewer(role=Role(info.context.viewer.role.value))


async def _nothing(info: Info, pk: int) -> Any:
    return None


async def _student(info: Info, pk: int) -> Any:
    return see_student(info.context.viewer, await info.context.loaders.students_by_id.load(pk))


async def _teacher(info: Info, pk: int) -> Any:
    return see_teacher(info.context.viewer, await info.context.loaders.teachers_by_id.load(pk))


async def _organization(info: Info, pk: int) -> Any:
    return see_organization(info.context.viewer, await info.context.loaders.organizations_by_id.load(pk))


async def _game(info: Info, pk: int) -> Any:
    return see_game(info.context.viewer, await info.context.loaders.games_by_id.load(pk))


async def _category(info: Info, pk: int) -> Any:
    return await info.context.loaders.categories_by_id.load(pk)


async def _level(info: Info, pk: int) -> Any:
    return await info.context.loaders.levels_by_id.load(pk)


async def _assignment(info: Info, pk: int) -> Any:
    return see_assignment(info.context.viewer, await info.context.loaders.assignments_by_id.load(pk))


async def _score(info: Info, pk: int) -> Any:
    return see_score(info.context.viewer, await info.context.loaders.scores_by_id.load(pk))


async def _badge(info: Info, pk: int) -> Any:
    return await info.context.loaders.badges_by_id.load(pk)


NODE_FETCHERS: dict[str, Callable[[Info, int], Awaitable[Any]]] = {
    "Student": _student,
    "Teacher": _teacher,
    "Organization": _organization,
    "Game": _game,
    "Category": _category,
    "Level": _level,
    "Assignment": _assignment,
    "Score": _score,
    "Badge": _badge,
}


async def resolve_node(info: Info, id: strawberry.ID) -> Node | None:
    """Any object by global id; unknown, malformed and other organizations' ids all read as null."""
    info.context.viewer  # noqa: B018 - authentication first, so errors never hint at what exists
    type_name, pk = decode_global_id(id)
    fetch = NODE_FETCHERS.get(type_name, _nothing)
    found: Node | None = await fetch(info, pk)
    return found
