"""The cost analyzer: prices an operation before it runs, cached per (document, cost-relevant variables)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInputObjectType,
    GraphQLSchema,
    ListTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeNode,
    value_from_ast_untyped,
)
from graphql.language import FieldNode, InlineFragmentNode

from mlc_graph.guards.cost.plan import Planner, Selection
from mlc_graph.guards.cost.report import breakdown, describe_path, heaviest_path, lowering_hint
from mlc_graph.guards.cost.walker import compile_walker
from mlc_graph.guards.cost.weights import build_weight_table
from mlc_graph.platform.errors import CostValidationError, QueryTooComplexError

# Only these variable types can change a price: Int (first/last) and Boolean (@skip/@include), and input
# objects whose lists size a field (a variant holding one is priced every time: it cannot be hashed).
_COST_VARIABLE_TYPES = frozenset({"Int", "Boolean"})
_MAX_VARIANTS = 32  # variable combinations cached per document


class _Absent:
    """A variable the request did not send (hashable by identity, equal to no JSON value)."""


_ABSENT = _Absent()


@dataclass(frozen=True, slots=True)
class CostAnalysis:
    """The price of one operation with one set of variables."""

    requested: int
    plan: Selection
    operation: str  # query, mutation or subscription

    def actual(self, data: Any) -> int:
        walk = self.plan.walker
        if walk is None:
            walk = self.plan.walker = compile_walker(self.plan)
        result: int = walk(data)
        return result

    def breakdown(self) -> list[dict[str, Any]]:
        return breakdown(self.plan)

    def check(self, budget: int) -> None:
        """Raise QUERY_TOO_COMPLEX, naming the field that multiplied the cost most, when over budget."""
        if self.requested <= budget:
            return
        factor, path = heaviest_path(self.plan)
        where = describe_path(path)
        hint = (
            f" Most of it comes from `{where}`, which is asked for {factor} times: {lowering_hint(path)}."
            if path
            else " Select fewer fields or split the query."
        )
        raise QueryTooComplexError(
            f"Query cost {self.requested} exceeds the budget of {budget}.{hint}",
            cost=self.requested,
            budget=budget,
            path=where or None,
        )

    def extension(self, data: Any, budget: int, include_fields: bool = False) -> dict[str, Any]:
        """`extensions.cost` of a response."""
        value: dict[str, Any] = {
            "requestedQueryCost": self.requested,
            "actualQueryCost": self.actual(data),
            "budget": budget,
        }
        if include_fields:
            value["fields"] = self.breakdown()
        return value


_EMPTY = CostAnalysis(0, Selection({}, 0), "query")


@dataclass(slots=True)
class _DocumentCosts:
    operation: OperationDefinitionNode | None
    fragments: dict[str, FragmentDefinitionNode]
    relevant: tuple[str, ...]
    defaults: dict[str, Any]
    variants: dict[Hashable, CostAnalysis] = field(default_factory=dict)


def _base_type_name(node: TypeNode) -> str | None:
    """The variable's type name when it is a (non-null) named type; lists never size anything."""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    if isinstance(node, ListTypeNode):
        return None
    return node.name.value  # type: ignore[attr-defined, no-any-return]


def _spreads(selection_set: SelectionSetNode | None, into: set[str]) -> set[str]:
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FragmentSpreadNode):
            into.add(selection.name.value)
        elif isinstance(selection, FieldNode | InlineFragmentNode):
            _spreads(selection.selection_set, into)
    return into


def find_fragment_cycle(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str] | None:
    """A chain of fragment names that spreads into itself, if any (iterative DFS: no recursion limit)."""
    graph = {name: _spreads(fragment.selection_set, set()) for name, fragment in fragments.items()}
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done or nxt not in graph:
                continue
            path.append(nxt)
            on_path.add(nxt)
            stack.append(iter(sorted(graph[nxt])))
    return None


class CostAnalyzer:
    """Built once per schema (the weight table is read then); `analyze` is called per request."""

    def __init__(self, schema: GraphQLSchema, cache_size: int = 1024) -> None:
        self.schema = schema
        self.table = build_weight_table(schema)
        self._cache_size = cache_size
        self._documents: dict[Hashable, _DocumentCosts] = {}

    def _is_input_object(self, node: TypeNode) -> bool:
        """An input object (or a list of them): a list inside it can price a field (`input.plays`)."""
        while isinstance(node, NonNullTypeNode | ListTypeNode):
            node = node.type
        return isinstance(self.schema.get_type(node.name.value), GraphQLInputObjectType)  # type: ignore[attr-defined]

    def _prepare(self, document: DocumentNode, operation_name: str | None) -> _DocumentCosts:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        cycle = find_fragment_cycle(fragments)
        if cycle is not None:
            raise CostValidationError(
                f"Cannot spread fragment '{cycle[0]}' within itself via {', '.join(cycle)}."
            )
        if operation_name is None:
            operation = operations[0] if len(operations) == 1 else None
        else:
            operation = next((o for o in operations if o.name and o.name.value == operation_name), None)
        relevant: list[str] = []
        defaults: dict[str, Any] = {}
        for definition in (operation.variable_definitions or ()) if operation else ():
            name = definition.variable.name.value
            if _base_type_name(definition.type) in _COST_VARIABLE_TYPES or self._is_input_object(
                definition.type
            ):
                relevant.append(name)
            if definition.default_value is not None:
                defaults[name] = value_from_ast_untyped(definition.default_value)
        return _DocumentCosts(operation, fragments, tuple(relevant), defaults)

    def analyze(
        self,
        document: DocumentNode,
        variables: Mapping[str, Any] | None = None,
        operation_name: str | None = None,
        cache_key: Hashable | None = None,
    ) -> CostAnalysis:
        """Price the operation; `cache_key` (e.g. the document text) enables caching."""
        variables = variables or {}
        entry: _DocumentCosts | None = None
        if cache_key is not None:
            entry = self._documents.get((cache_key, operation_name))
        if entry is None:
            entry = self._prepare(document, operation_name)
            if cache_key is not None:
                if len(self._documents) >= self._cache_size:
                    del self._documents[next(iter(self._documents))]
                self._documents[(cache_key, operation_name)] = entry
        try:
            # Typed, and absent distinct from null: True == 1 and 1.0 == 1 in Python, and an absent
            # variable takes its default where null takes the schema's; none may share a price.
            variant: Hashable = tuple(
                (type(value), value) for value in (variables.get(name, _ABSENT) for name in entry.relevant)
            )
            hash(variant)
        except TypeError:  # a list or object where an Int was declared: execution will refuse it
            variant = None
        if variant is not None:
            found = entry.variants.get(variant)
            if found is not None:
                return found
        analysis = self._price(entry, variables)
        if variant is not None:
            if len(entry.variants) >= _MAX_VARIANTS:
                del entry.variants[next(iter(entry.variants))]
            entry.variants[variant] = analysis
        return analysis

    def _price(self, entry: _DocumentCosts, variables: Mapping[str, Any]) -> CostAnalysis:
        operation = entry.operation
        if operation is None:
            return _EMPTY  # no such operation: execution reports it in the standard way
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return _EMPTY
        planner = Planner(self.schema, self.table, entry.fragments, variables, entry.defaults)
        plan = planner.price(root, operation.selection_set)
        kind = operation.operation.value if isinstance(operation.operation, OperationType) else "query"
        return CostAnalysis(plan.cost, plan, kind)
