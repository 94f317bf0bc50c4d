"""The per-(type, field) price list, read once per schema from the @cost and @listSize directives.

Defaults where a field declares nothing: scalars and enums 0, objects 1, lists sized by their `first`/`last`
argument (Relay convention) or DEFAULT_LIST_SIZE, root mutation fields MUTATION_WEIGHT. Inside a Relay
connection type the `edges` list carries the connection's page size and the wrappers (`edges` items,
`pageInfo`) are free: the node is what costs, so Relay's shape does not double every price.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLType,
    is_composite_type,
    value_from_ast_untyped,
)
from graphql.language import DirectiveNode

DEFAULT_LIST_SIZE = 10
MUTATION_WEIGHT = 10
SLICING_ARGUMENTS = ("first", "last")
CONNECTION_SIZED_FIELDS = ("edges", "nodes")
_STRAWBERRY_BACKREF = "strawberry-definition"


@dataclass(frozen=True, slots=True)
class FieldCost:
    """How one field is priced."""

    weight: int  # per value returned
    composite: bool  # object, interface or union: has a selection set
    is_list: bool
    slicing_arguments: tuple[str, ...]
    default_size: int  # items assumed when no slicing argument is given
    sized_fields: tuple[str, ...]  # fields of the returned object whose length this field's slicing sets
    require_one_slicing_argument: bool = True


WeightTable = Mapping[str, Mapping[str, FieldCost]]


def _unwrap(type_: GraphQLType) -> tuple[GraphQLType, bool]:
    is_list = False
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        is_list = is_list or isinstance(type_, GraphQLList)
        type_ = type_.of_type
    return type_, is_list


def _directive_args(node: DirectiveNode) -> dict[str, Any]:
    return {arg.name.value: value_from_ast_untyped(arg.value) for arg in node.arguments or ()}


def _declared(field: GraphQLField) -> dict[str, dict[str, Any]]:
    """Directive name -> arguments, from a Strawberry field or from SDL (schemas built in tests)."""
    found: dict[str, dict[str, Any]] = {}
    definition = (field.extensions or {}).get(_STRAWBERRY_BACKREF)
    for directive in getattr(definition, "directives", None) or ():
        meta = getattr(type(directive), "__strawberry_directive__", None)
        if meta is not None and meta.graphql_name in {"cost", "listSize"}:
            found[meta.graphql_name] = {
                "weight": getattr(directive, "weight", None),
                "assumedSize": getattr(directive, "assumed_size", None),
                "slicingArguments": getattr(directive, "slicing_arguments", None),
                "sizedFields": getattr(directive, "sized_fields", None),
                "requireOneSlicingArgument": getattr(directive, "require_one_slicing_argument", True),
            }
    if field.ast_node is not None:
        for node in field.ast_node.directives or ():
            if node.name.value in {"cost", "listSize"}:
                found[node.name.value] = _directive_args(node)
    return found


def is_connection(type_: GraphQLType) -> bool:
    """A Relay connection: an object with an `edges` list and a `pageInfo`."""
    if not isinstance(type_, GraphQLObjectType):
        return False
    edges = type_.fields.get("edges")
    return edges is not None and _unwrap(edges.type)[1] and "pageInfo" in type_.fields


def _field_cost(
    field: GraphQLField, *, mutation: bool, wrapper: bool, declared: dict[str, dict[str, Any]]
) -> FieldCost:
    named, is_list = _unwrap(field.type)
    composite = is_composite_type(named)
    cost = declared.get("cost", {})
    sizing = declared.get("listSize", {})
    # Unset directive arguments arrive as None, Undefined or Strawberry's UNSET: only real values count.
    declared_weight = cost.get("weight")
    if isinstance(declared_weight, int):
        weight = declared_weight
    elif mutation:
        weight = MUTATION_WEIGHT  # a write costs the same whether it answers a scalar or an object
    elif wrapper or not composite:
        weight = 0
    else:
        weight = 1
    slicing = sizing.get("slicingArguments")
    if not isinstance(slicing, list):
        slicing = [name for name in SLICING_ARGUMENTS if name in field.args]
    defaults = [
        field.args[name].default_value
        for name in slicing
        if name in field.args and isinstance(field.args[name].default_value, int)
    ]
    assumed = sizing.get("assumedSize")
    if defaults:
        default_size = max(defaults)
    elif isinstance(assumed, int):
        default_size = assumed
    else:
        default_size = DEFAULT_LIST_SIZE
    sized = sizing.get("sizedFields")
    if not isinstance(sized, list):
        sized = [name for name in CONNECTION_SIZED_FIELDS if is_connection(named) and name in named.fields]  # type: ignore[attr-defined]
    require_one = sizing.get("requireOneSlicingArgument")
    return FieldCost(
        weight=weight,
        composite=composite,
        is_list=is_list,
        slicing_arguments=tuple(slicing),
        default_size=max(0, default_size),
        sized_fields=tuple(sized),
        require_one_slicing_argument=require_one if isinstance(require_one, bool) else True,
    )


def _fielded_types(schema: GraphQLSchema) -> Iterator[GraphQLObjectType | GraphQLInterfaceType]:
    for name, type_ in schema.type_map.items():
        if not name.startswith("__") and isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            yield type_


def build_weight_table(schema: GraphQLSchema) -> dict[str, dict[str, FieldCost]]:
    """Type name -> field name -> FieldCost, for every object and interface type (not introspection)."""
    table: dict[str, dict[str, FieldCost]] = {}
    mutation = schema.mutation_type
    for type_ in _fielded_types(schema):
        connection = is_connection(type_)
        table[type_.name] = {
            name: _field_cost(
                field,
                mutation=type_ is mutation,
                wrapper=connection and name in {"edges", "pageInfo"},
                declared=_declared(field),
            )
            for name, field in type_.fields.items()
        }
    return table
