"""Schema directives that price a field where it is declared (Apollo demand-control style).

`mlc_graph.guards.cost` reads them once per schema at start-up; they also appear in schema.graphql so clients
can see what a field costs before they send a query.
"""

from __future__ import annotations

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


__all__ = ["Cost", "ListSize"]
