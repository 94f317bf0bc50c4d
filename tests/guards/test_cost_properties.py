"""Properties of the price over generated queries of the real schema: never negative, monotone in `first`."""

from __future__ import annotations

from graphql import (
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLType,
    is_leaf_type,
    parse,
    validate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc_graph.guards.cost import CostAnalyzer
from resolvers.schema import schema

GRAPHQL_SCHEMA = schema._schema
ANALYZER = CostAnalyzer(GRAPHQL_SCHEMA)
MAX_DEPTH = 6


def _named(type_: GraphQLType) -> GraphQLNamedType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    assert isinstance(type_, GraphQLNamedType)
    return type_


@st.composite
def selections(draw: st.DrawFn, type_name: str, depth: int, slots: list[str]) -> str:
    """A selection set of `type_name`; each `first` argument becomes a new Int variable in `slots`."""
    type_ = GRAPHQL_SCHEMA.get_type(type_name)
    assert isinstance(type_, GraphQLObjectType)
    names = sorted(
        name
        for name, field in type_.fields.items()
        if not any(arg.type.__class__ is GraphQLNonNull for arg in field.args.values())
        and (depth < MAX_DEPTH or is_leaf_type(_named(field.type)))
    )
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    parts = []
    for name in picked:
        field = type_.fields[name]
        named = _named(field.type)
        text = name
        if "first" in field.args:
            slots.append(f"v{len(slots)}")
            text += f"(first: ${slots[-1]})"
        if not is_leaf_type(named):
            text += " " + draw(selections(named.name, depth + 1, slots))
        parts.append(text)
    return "{ " + " ".join(parts) + " }"


@st.composite
def priced_queries(draw: st.DrawFn) -> tuple[str, list[str]]:
    slots: list[str] = []
    # Roots without required arguments, plus objects reached by id (their arguments are ID literals).
    root = draw(st.sampled_from(["games", "categories", "teacher", "student", "game"]))
    args = '(id: "x")' if root in {"teacher", "student", "game"} else ""
    root_type = _named(GRAPHQL_SCHEMA.query_type.fields[root].type)  # type: ignore[union-attr]
    if root == "games":
        slots.append("v0")
        args = "(first: $v0)"
    body = draw(selections(root_type.name, 2, slots))
    declared = "".join(f"${slot}: Int " for slot in slots)
    header = f"query({declared})" if slots else "query"
    return f"{header} {{ {root}{args} {body} }}", slots


@settings(max_examples=150, deadline=None)
@given(query=priced_queries(), data=st.data())
def test_cost_is_never_negative_and_monotone_in_first(
    query: tuple[str, list[str]], data: st.DataObject
) -> None:
    text, slots = query
    document = parse(text)
    assert validate(GRAPHQL_SCHEMA, document) == []
    sizes = st.one_of(st.none(), st.integers(min_value=-5, max_value=150))
    variables = {slot: data.draw(sizes) for slot in slots}
    base = ANALYZER.analyze(document, variables).requested
    assert base >= 0
    if not slots:
        return
    slot = data.draw(st.sampled_from(slots))
    current = variables[slot]
    # Absent or null means the schema default (at most 20 here), so grow from whichever is larger.
    bigger = max(current if current is not None else 20, 20) + data.draw(
        st.integers(min_value=1, max_value=80)
    )
    grown = ANALYZER.analyze(document, {**variables, slot: bigger}).requested
    assert grown >= base
