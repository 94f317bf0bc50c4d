"""Schema directives read once per schema at start-up, and shown in schema.graphql for clients to see.

`@cost` and `@listSize` price a field where it is declared (Apollo demand-control style; read by
`mlc_graph.guards.cost`). `@cacheControl` says how long an answer that selects a type or field may be
cached, and by whom (Apollo Server's directive, same rules; read by `mlc_graph.execution.cache_policy`).
"""

from __future__ import annotations

import enum

import strawberry
from strawberry.schema_directive import Location


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="cost",
    description="The cost of each value this field returns (default: 1 for objects, 0 for scalars).",
)
class Cost:
    weight: int


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="listSize",
    description=(
        "How many items a list or connection field returns, for pricing: the largest slicing argument "
        "(e.g. first) given, else its default, else assumedSize; sizedFields carry that size."
    ),
)
class ListSize:
    # UNSET rather than None: Strawberry leaves unset arguments out of schema.graphql.
    assumed_size: int | None = strawberry.UNSET
    slicing_arguments: list[str] | None = strawberry.UNSET
    # Fields of the returned object that hold the page (a connection's `edges`, a board's `entries`).
    sized_fields: list[str] | None = strawberry.UNSET
    require_one_slicing_argument: bool | None = strawberry.UNSET  # unset means true


@strawberry.enum(description="Who may keep a cached answer: any cache (a CDN) or only the caller's own.")
class CacheControlScope(enum.Enum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION, Location.OBJECT, Location.INTERFACE, Location.UNION],
    name="cacheControl",
    description=(
        "How long (seconds) an answer selecting this may be cached, and by whom. An answer's policy is the "
        "lowest maxAge of its fields and PRIVATE if any is; a root field, or a field returning an object, "
        "without a hint is 0 (not cacheable) unless inheritMaxAge; scalar fields take their parent's."
    ),
)
class CacheControl:
    max_age: int | None = strawberry.UNSET
    scope: CacheControlScope | None = strawberry.UNSET
    inherit_max_age: bool | None = strawberry.UNSET


__all__ = ["CacheControl", "CacheControlScope", "Cost", "ListSize"]
