"""Teacher and their class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.pagination import EMPTY_PAGE
from loaders.teachers import TeacherRow
from resolvers.access import see_organization
from resolvers.directives import ListSize
from resolvers.enums import StudentStatus
from resolvers.info import Info
from resolvers.relay import Connection, Node, connection_from_page, count_nothing, global_id_field, page_args

if TYPE_CHECKING:
    from loaders.organizations import OrganizationRow
    from resolvers.organizations import Organization
    from resolvers.students import Student


async def resolve_organization(
    root: TeacherRow, info: Info
) -> Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None:
    row: OrganizationRow | None = await info.context.loaders.organizations_by_id.load(root.org_id)
    return see_organization(info.context.viewer, row)  # type: ignore[return-value]


async def resolve_students(
    root: TeacherRow,
    info: Info,
    first: int | None = 20,
    after: str | None = None,
    status: Annotated[
        StudentStatus | None,
        strawberry.argument(
            description="Only students with this status (ACTIVE: the class a dashboard shows)."
        ),
    ] = None,
) -> Connection[Annotated[Student, strawberry.lazy("resolvers.students")]]:
    args = page_args(first, after, (str, str, int), status.value if status is not None else None)
    viewer = info.context.viewer
    if not viewer.is_staff or not viewer.can_see_org(root.org_id):
        # A student sees their teacher, not the rest of the class roster (nor its size).
        return connection_from_page(EMPTY_PAGE, after is not None, count_nothing)
    loaders = info.context.loaders
    page = await loaders.student_pages_by_teacher.load((root.id, args))

    async def count() -> int:
        if after is None and not page.has_next:
            # The first page holds the whole class (the page and the count read the same rows):
            # its size is the count, and a class that fits one page costs no count statement.
            return len(page.rows)
        return await loaders.student_count_by_teacher.load((root.id, args.filter))

    return connection_from_page(page, after is not None, count)


def resolve_display_name(root: TeacherRow) -> str:
    return f"{root.first_name[:1]}. {root.last_name}"


@strawberry.type(description="A teacher: assigns games and follows their class.")
class Teacher(Node):
    id: strawberry.ID = global_id_field("Teacher")
    first_name: str
    last_name: str
    organization: Annotated[Organization, strawberry.lazy("resolvers.organizations")] | None = (
        strawberry.field(resolver=resolve_organization)
    )
    students: Connection[Annotated[Student, strawberry.lazy("resolvers.students")]] = strawberry.field(
        resolver=resolve_students,
        description="The teacher's class, alphabetically by last name; every status unless `status` says.",
        directives=[ListSize(slicing_arguments=["first"])],
    )

    display_name: str = strawberry.field(
        resolver=resolve_display_name, description="How students see the teacher's name, e.g. 'T. Rivera'."
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, TeacherRow)
