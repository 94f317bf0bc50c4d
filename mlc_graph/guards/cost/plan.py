"""Static pricing of one operation: the document's fields collected the way the executor collects them.

Fields are grouped by response key (so `a { x } a { y }` is one object, as in the response), each fragment is
expanded at most once per selection set (as graphql-core does), `@skip`/`@include` are honoured when their
value is known, and an abstract type is priced as its most expensive possible type. Results are memoised per
(selection sets, type, page size), so fragment "bombs" cost linear time to price, not exponential.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NamedTypeNode,
    ObjectValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
)
from graphql.type import GraphQLAbstractType, GraphQLType

from mlc_graph.guards.cost.weights import WeightTable
from mlc_graph.platform.errors import CostValidationError

# Guards the recursion; validation (depth 15, fragment cycles) refuses such documents long before.
MAX_PLAN_DEPTH = 64
_MISSING: Any = object()


@dataclass(slots=True, eq=False)
class PlanField:
    """One response key under its parent, priced."""

    key: str
    coordinate: str  # Type.field
    weight: int  # per value
    size: int  # values per parent value: 1 unless a list
    sized_by_parent: bool  # a connection's `edges`: its size is the connection's `first`
    selection: Selection | None  # None for scalars and enums
    cost: int  # size x (weight + selection cost); the weight alone for leaves
    slicing: tuple[str, ...] = ()  # the arguments that set `size` (what a refusal tells the client to lower)


@dataclass(slots=True, eq=False)
class Selection:
    """The fields of one object value, merged across the possible types of an abstract type."""

    fields: dict[str, PlanField]
    cost: int  # of the most expensive possible type
    # What the actual-cost walk visits, precomputed: only fields that cost or contain something that does.
    priced: tuple[tuple[str, int, Selection | None], ...] = ()
    # The walk compiled for this selection as a plan's root (mlc_graph.guards.cost.walker), on first use.
    walker: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.priced = tuple(
            (key, field.weight, field.selection)
            for key, field in self.fields.items()
            if field.weight
            or (field.selection is not None and field.selection.cost)
            or (field.selection is not None and field.selection.priced)
        )


def _named(type_: GraphQLType) -> GraphQLType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


class Planner:
    """Prices one operation for one set of variable values."""

    def __init__(
        self,
        schema: GraphQLSchema,
        table: WeightTable,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        variable_defaults: Mapping[str, Any],
    ) -> None:
        self._schema = schema
        self._table = table
        self._fragments = fragments
        self._variables = variables
        self._defaults = variable_defaults
        self._memo: dict[tuple[Any, ...], Selection] = {}

    def price(self, root: GraphQLObjectType, selection_set: SelectionSetNode) -> Selection:
        return self._selection(root, (selection_set,), 0, (), 0)

    # -- values -------------------------------------------------------------------------------------
    def _value(self, node: ValueNode) -> Any:
        if isinstance(node, VariableNode):
            name = node.name.value
            value = self._variables.get(name, _MISSING)
            return self._defaults.get(name) if value is _MISSING else value
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, BooleanValueNode):
            return node.value
        return None

    def _included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        """False only when @skip/@include say so for sure; an unknown value counts as included."""
        for directive in node.directives or ():
            name = directive.name.value
            if name not in {"skip", "include"}:
                continue
            for arg in directive.arguments or ():
                if arg.name.value == "if":
                    value = self._value(arg.value)
                    if value is (name == "skip") and isinstance(value, bool):
                        return False
        return True

    def _length(self, node: FieldNode, path: str) -> int | None:
        """The length of the list at `path` (`input.plays`) in the field's arguments, when known."""
        head, *rest = path.split(".")
        value: Any = next((arg.value for arg in node.arguments or () if arg.name.value == head), None)
        for part in rest:
            if isinstance(value, VariableNode):
                value = self._value(value)
            if isinstance(value, ObjectValueNode):
                value = next((f.value for f in value.fields if f.name.value == part), None)
            elif isinstance(value, Mapping):
                value = value.get(part)
            else:
                return None
        if isinstance(value, VariableNode):
            value = self._value(value)
        if isinstance(value, ListValueNode):
            return len(value.values)
        return len(value) if isinstance(value, list) else None

    def _size(self, node: FieldNode, slicing: Sequence[str], default: int) -> int:
        sizes = [n for n in (self._length(node, path) for path in slicing if "." in path) if n is not None]
        for arg in node.arguments or ():
            if arg.name.value in slicing:
                value = self._value(arg.value)
                if isinstance(value, float) and value.is_integer():
                    value = int(value)  # graphql-core coerces 100.0 to the Int 100: price it as 100
                if isinstance(value, int) and not isinstance(value, bool):
                    sizes.append(value)
        return max(0, max(sizes)) if sizes else default

    # -- collection, as graphql-core's collect_fields ----------------------------------------------
    def _applies(self, condition: NamedTypeNode | None, type_: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        found = self._schema.get_type(condition.name.value)
        if found is type_:
            return True
        if isinstance(found, GraphQLAbstractType):
            return self._schema.is_sub_type(found, type_)
        return False

    def _collect(
        self,
        type_: GraphQLObjectType,
        selection_set: SelectionSetNode,
        into: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if self._included(selection):
                    key = (selection.alias or selection.name).value
                    into.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._included(selection) and self._applies(selection.type_condition, type_):
                    self._collect(type_, selection.selection_set, into, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited or not self._included(selection):
                    continue
                visited.add(name)
                fragment = self._fragments.get(name)
                if fragment is not None and self._applies(fragment.type_condition, type_):
                    self._collect(type_, fragment.selection_set, into, visited)

    # -- pricing ------------------------------------------------------------------------------------
    def _selection(
        self,
        type_: GraphQLCompositeType,
        sets: tuple[SelectionSetNode, ...],
        sized: int,
        sized_fields: tuple[str, ...],
        depth: int,
    ) -> Selection:
        memo_key = (type_.name, tuple(map(id, sets)), sized, sized_fields)
        found = self._memo.get(memo_key)
        if found is not None:
            return found
        if depth > MAX_PLAN_DEPTH:
            raise CostValidationError(f"The operation nests more than {MAX_PLAN_DEPTH} levels deep.")
        if isinstance(type_, GraphQLObjectType):
            possible: Sequence[GraphQLObjectType] = (type_,)
        else:
            possible = self._schema.get_possible_types(type_)
        merged: dict[str, PlanField] = {}
        best = 0
        for concrete in possible:
            grouped: dict[str, list[FieldNode]] = {}
            visited: set[str] = set()
            for selection_set in sets:
                self._collect(concrete, selection_set, grouped, visited)
            total = 0
            for key, nodes in grouped.items():
                field = self._field(concrete, key, nodes, sized, sized_fields, depth)
                if field is None:
                    continue
                total += field.cost
                previous = merged.get(key)
                if previous is None or field.cost > previous.cost:
                    merged[key] = field
            best = max(best, total)
        result = Selection(merged, best)
        self._memo[memo_key] = result
        return result

    def _field(
        self,
        parent: GraphQLObjectType,
        key: str,
        nodes: list[FieldNode],
        sized: int,
        sized_fields: tuple[str, ...],
        depth: int,
    ) -> PlanField | None:
        name = nodes[0].name.value
        coordinate = f"{parent.name}.{name}"
        if name.startswith("__"):
            # __typename is free; introspection is bounded by MaxIntrospectionDepthRule, not priced.
            return PlanField(key, coordinate, 0, 1, False, None, 0)
        spec = self._table.get(parent.name, {}).get(name)
        definition = parent.fields.get(name)
        if spec is None or definition is None:
            return None  # unknown field: validation reports it
        if not spec.composite:
            return PlanField(key, coordinate, spec.weight, 1, False, None, spec.weight)
        by_parent = spec.is_list and name in sized_fields
        own = sized if by_parent else self._size(nodes[0], spec.slicing_arguments, spec.default_size)
        size = own if spec.is_list else 1
        # A single field sliced by a list in its input (a batch mutation): its weight counts per item.
        weight = (
            spec.weight * own
            if not spec.is_list and any("." in a for a in spec.slicing_arguments)
            else spec.weight
        )
        child_type = _named(definition.type)
        sets = tuple(node.selection_set for node in nodes if node.selection_set is not None)
        selection = self._selection(
            child_type,  # type: ignore[arg-type]
            sets,
            own if spec.sized_fields else 0,
            spec.sized_fields,
            depth + 1,
        )
        return PlanField(
            key,
            coordinate,
            weight,
            size,
            by_parent,
            selection,
            size * (weight + selection.cost),
            tuple(name for name in spec.slicing_arguments if definition.args.get(name) is not None),
        )
