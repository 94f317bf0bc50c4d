"""Organization: a school or district subscribing in a tier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.organizations import OrganizationRow
from resolvers.directives import ListSize
from resolvers.enums import Tier
from resolvers.info import Info
from resolvers.relay import Connection, Node, connection_from_page, global_id_field, page_args

if TYPE_CHECKING:
    from resolvers.teachers import Teacher


async def resolve_teachers(
    root: OrganizationRow, info: Info, first: int | None = 20, after: str | None = None
) -> Connection[Annotated[Teacher, strawberry.lazy("resolvers.teachers")]]:
    args = page_args(first, after, (str, str, int))
    loaders = info.context.loaders
    page = await loaders.teacher_pages_by_org.load((root.id, args))

    async def count() -> int:
        return await loaders.teacher_count_by_org.load(root.id)

    return connection_from_page(page, after is not None, count)


@strawberry.type(description="A school or district: the tenant that owns teachers and students.")
class Organization(Node):
    id: strawberry.ID = global_id_field("Organization")
    name: str
    tier: Tier
    seat_count: int = strawberry.field(description="Paid student seats (ENSEMBLE tier).")
    teachers: Connection[Annotated[Teacher, strawberry.lazy("resolvers.teachers")]] = strawberry.field(
        resolver=resolve_teachers,
        description="The organization's teachers, alphabetically.",
        directives=[ListSize(slicing_arguments=["first"])],
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, OrganizationRow)
