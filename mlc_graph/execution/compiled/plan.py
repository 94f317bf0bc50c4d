"""Execution plans: an operation walked once against the schema into a tree of field plans.

A plan is what graphql-core recomputes for every object of every request (field collection, fragment
and @skip/@include resolution, field definitions, argument coercion, Strawberry's argument conversion,
the resolver's calling convention, how to serialize each leaf), done once per (document, operation,
values of the variables that @skip/@include read). Anything the compiler does not model raises
`Unsupported`, and the whole document then runs on graphql-core.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    is_abstract_type,
    is_leaf_type,
    is_object_type,
    type_from_ast,
)

from mlc_graph.execution.compiled.compat import (
    DEFINITION_BACKREF,
    StrawberryField,
    StrawberryMaybe,
    StrawberryOptional,
    VariableValues,
    convert_arguments,
    get_argument_values,
    has_field_exception_handlers,
    resolver_function,
)
from mlc_graph.execution.compiled.leaves import leaf_serializer, passthrough

# Field kinds: how a value is obtained from its parent.
ATTR = 0  # a plain attribute of the parent row
SYNC = 1  # a resolver function returning the value
ASYNC = 2  # a resolver coroutine function
TYPENAME = 3  # __typename

# Completion kinds: what is done with the value.
LEAF = 0
OBJECT = 1
LIST = 2
ABSTRACT = 3

_BACKREF = DEFINITION_BACKREF
# A resolver's batch form: (parents, info, arguments) -> one value per parent, in parent order.
BatchResolver = Callable[[Sequence[Any], Any, Mapping[str, Any]], Coroutine[Any, Any, list[Any]]]
_EMPTY_VARIABLES = VariableValues({}, {})


class Unsupported(Exception):  # noqa: N818 - a verdict, not a failure
    """The document uses something the compiled executor leaves to graphql-core."""


Invoke = Callable[[Any, Any, Mapping[str, Any]], Any]


@dataclass(slots=True, eq=False)
class Completer:
    """How a resolved value becomes JSON: nullability, lists, leaves, objects, abstract types."""

    kind: int
    nonnull: bool
    serialize: Callable[[Any], Any] | None = None
    # The builtin scalar a leaf is ("str", "int", "bool", "float") when its values pass through as is.
    passthrough: str = ""
    item: Completer | None = None
    plan: SelectionPlan | None = None
    # Abstract types: a plan per possible runtime type, and what resolve_type needs.
    plans: dict[str, SelectionPlan] = field(default_factory=dict)
    abstract: GraphQLAbstractType | None = None
    field_name: str = ""
    field_nodes: list[FieldNode] = field(default_factory=list)
    parent_type: GraphQLObjectType | None = None


@dataclass(slots=True, eq=False)
class FieldPlan:
    key: str
    kind: int
    complete: Completer
    attr: str = ""
    typename: str = ""
    invoke: Invoke | None = None
    func: Callable[..., Any] | None = None
    convention: str = ""
    # Converted keyword arguments: constant when they read no variable, else per request (arg_slot).
    args: Mapping[str, Any] = field(default_factory=dict)
    arg_slot: int = -1
    # The batch form of the resolver (handed in by the schema's owner): one call for every parent of a pass.
    batch: BatchResolver | None = None


@dataclass(slots=True, eq=False)
class SelectionPlan:
    """The fields of one object type at one position of the operation."""

    index: int
    type_name: str
    is_type_of: Callable[[Any, Any], Any] | None
    fields: list[FieldPlan] = field(default_factory=list)
    # Completed objects are shared between positions holding the same row (a game under 500 assignments)
    # only when something below does real work; cheap leaf-only objects are rebuilt.
    memoize: bool = False
    # The generated completion function (mlc_graph.execution.compiled.codegen): (runner, source) -> dict.
    build: Callable[[Any, Any], dict[str, Any]] | None = None


@dataclass(slots=True, eq=False)
class ArgumentSlot:
    """Arguments that read variables: coerced and converted once per request, not once per parent."""

    field_def: GraphQLField
    node: FieldNode
    strawberry_field: StrawberryField


@dataclass(slots=True, eq=False)
class Plan:
    root: SelectionPlan
    plan_count: int
    argument_slots: list[ArgumentSlot]
    convert: Callable[[StrawberryField, dict[str, Any]], dict[str, Any]]
    schema: GraphQLSchema
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    runs: int = 0
    bails: int = 0
    disabled: bool = False


def skip_variables(
    operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> tuple[str, ...]:
    """Names of the variables @skip/@include read: their values become part of the plan key."""
    names: list[str] = []

    def visit(node: Node) -> None:
        for directive in getattr(node, "directives", None) or ():
            if directive.name.value in ("skip", "include"):
                for argument in directive.arguments or ():
                    if isinstance(argument.value, VariableNode) and argument.value.name.value not in names:
                        names.append(argument.value.name.value)
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            for selection in selection_set.selections:
                visit(selection)

    visit(operation)
    for fragment in fragments.values():
        visit(fragment)
    return tuple(names)


class Compiler:
    """Builds one Plan; the instance lives only while compiling."""

    def __init__(
        self,
        schema: GraphQLSchema,
        strawberry_schema: Any,
        operation: OperationDefinitionNode,
        fragments: dict[str, FragmentDefinitionNode],
        skip_values: Mapping[str, Any],
        batch_resolvers: Mapping[object, BatchResolver],
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        self.skip_values = skip_values
        self.plan_count = 0
        self.argument_slots: list[ArgumentSlot] = []
        converter = strawberry_schema.schema_converter
        if has_field_exception_handlers(converter):
            raise Unsupported("field exception handlers")
        self.config = strawberry_schema.config
        if self.config.default_resolver is not getattr:
            raise Unsupported("custom default resolver")
        registry = converter.scalar_registry
        config = self.config

        renames: dict[int, list[tuple[str, str]] | None] = {}

        def convert(strawberry_field: StrawberryField, raw: dict[str, Any]) -> dict[str, Any]:
            pairs = renames.get(id(strawberry_field), _UNKNOWN)
            if pairs is _UNKNOWN:
                pairs = renames[id(strawberry_field)] = _scalar_renames(strawberry_field, config)
            if pairs is not None:
                # Builtin scalars convert to themselves: only the names change (camelCase -> python).
                return {python: raw[name] for name, python in pairs if name in raw}
            converted: dict[str, Any] = convert_arguments(
                raw, strawberry_field.arguments, scalar_registry=registry, config=config
            )
            return converted

        self.convert = convert
        self.batch_resolvers = batch_resolvers

    def compile(self) -> Plan:
        if self.operation.operation is not OperationType.QUERY:
            raise Unsupported("only queries are compiled")
        root_type = self.schema.query_type
        if root_type is None:
            raise Unsupported("no query type")
        root = self.selection_plan(root_type, [self.operation.selection_set])
        return Plan(
            root,
            self.plan_count,
            self.argument_slots,
            self.convert,
            self.schema,
            self.operation,
            self.fragments,
        )

    # -- field collection, as graphql-core's collect_fields does it -------------------------------

    def _included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                raise Unsupported(f"directive @{name}")
            value = None
            for argument in directive.arguments or ():
                if argument.name.value == "if":
                    if isinstance(argument.value, BooleanValueNode):
                        value = argument.value.value
                    elif isinstance(argument.value, VariableNode):
                        value = self.skip_values.get(argument.value.name.value)
                    else:
                        raise Unsupported("unusual @skip/@include argument")
            if name == "skip" and value is True:
                return False
            if name == "include" and value is False:
                return False
        return True

    def _condition_matches(self, condition: Any, type_: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        conditional_type = type_from_ast(self.schema, condition)
        if conditional_type is type_:
            return True
        if is_abstract_type(conditional_type):
            return self.schema.is_sub_type(conditional_type, type_)
        return False

    def collect(
        self, type_: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    if not self._included(selection):
                        continue
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if not self._included(selection) or not self._condition_matches(
                        selection.type_condition, type_
                    ):
                        continue
                    walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in visited or not self._included(selection):
                        continue
                    fragment = self.fragments.get(name)
                    if fragment is None or not self._condition_matches(fragment.type_condition, type_):
                        continue
                    visited.add(name)
                    walk(fragment.selection_set)
                else:
                    raise Unsupported(type(selection).__name__)

        for selection_set in selection_sets:
            walk(selection_set)
        return fields

    # -- plans -----------------------------------------------------------------------------------

    def selection_plan(
        self, type_: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> SelectionPlan:
        plan = SelectionPlan(self.plan_count, type_.name, type_.is_type_of)
        self.plan_count += 1
        for key, nodes in self.collect(type_, selection_sets).items():
            field_plan = self.field_plan(type_, key, nodes)
            if field_plan is not None:
                plan.fields.append(field_plan)
        # Rows come from DataLoader caches and recur (one game under many assignments); objects that
        # resolvers build per call (connections, edges: no is_type_of of their own) never do.
        definition = (type_.extensions or {}).get(_BACKREF)
        shared = getattr(definition, "is_type_of", None) is not None
        plan.memoize = shared and any(
            f.kind in (SYNC, ASYNC) or f.complete.kind != LEAF for f in plan.fields if f.kind != TYPENAME
        )
        return plan

    def field_plan(self, parent: GraphQLObjectType, key: str, nodes: list[FieldNode]) -> FieldPlan | None:
        name = nodes[0].name.value
        if name == "__typename":
            return FieldPlan(key, TYPENAME, Completer(LEAF, True), typename=parent.name)
        if name.startswith("__"):
            raise Unsupported("introspection")
        field_def = parent.fields.get(name)
        if field_def is None:
            return None  # graphql-core leaves unknown fields out too (validation refuses them anyway)
        strawberry_field = (field_def.extensions or {}).get(_BACKREF)
        if not isinstance(strawberry_field, StrawberryField):
            raise Unsupported(f"{parent.name}.{name} is not a Strawberry field")
        if strawberry_field.extensions:
            raise Unsupported(f"{parent.name}.{name} has field extensions")
        complete = self.completer(field_def.type, parent, name, nodes)
        resolver = strawberry_field.base_resolver
        if resolver is None:
            return FieldPlan(key, ATTR, complete, attr=strawberry_field.python_name)
        kind = ASYNC if strawberry_field.is_async else SYNC
        invoke, func, convention = _invoker(resolver)
        plan = FieldPlan(key, kind, complete, invoke=invoke, func=func, convention=convention)
        if kind == ASYNC and parent is not self.schema.query_type:
            plan.batch = self.batch_resolvers.get(resolver_function(resolver))
        if field_def.args or nodes[0].arguments:
            if _reads_variables(nodes[0]):
                plan.arg_slot = len(self.argument_slots)
                self.argument_slots.append(ArgumentSlot(field_def, nodes[0], strawberry_field))
            else:
                try:
                    raw = get_argument_values(field_def, nodes[0], _EMPTY_VARIABLES)
                    plan.args = self.convert(strawberry_field, raw)
                except Exception as exc:
                    raise Unsupported(f"arguments of {parent.name}.{name}: {exc}") from exc
        return plan

    def completer(
        self, type_: GraphQLOutputType, parent: GraphQLObjectType, name: str, nodes: list[FieldNode]
    ) -> Completer:
        nonnull = isinstance(type_, GraphQLNonNull)
        inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if isinstance(inner, GraphQLList):
            return Completer(LIST, nonnull, item=self.completer(inner.of_type, parent, name, nodes))
        if is_leaf_type(inner):
            return Completer(LEAF, nonnull, serialize=leaf_serializer(inner), passthrough=passthrough(inner))
        selection_sets = [node.selection_set for node in nodes if node.selection_set is not None]
        if is_object_type(inner):
            return Completer(OBJECT, nonnull, plan=self.selection_plan(inner, selection_sets))
        if is_abstract_type(inner):
            plans = {
                possible.name: self.selection_plan(possible, selection_sets)
                for possible in self.schema.get_possible_types(inner)
            }
            return Completer(
                ABSTRACT,
                nonnull,
                plans=plans,
                abstract=inner,
                field_name=name,
                field_nodes=nodes,
                parent_type=parent,
            )
        raise Unsupported(f"output type {inner}")


_UNKNOWN: Any = object()
_SCALARS = (str, int, float, bool, strawberry.ID)


def _scalar_renames(strawberry_field: StrawberryField, config: Any) -> list[tuple[str, str]] | None:
    """(GraphQL name, Python name) of each argument when all are builtin scalars (optional or not),
    which Strawberry's convert_argument returns unchanged; None when any needs real conversion."""
    pairs: list[tuple[str, str]] = []
    for argument in strawberry_field.arguments:
        type_ = argument.type
        if isinstance(type_, StrawberryMaybe):
            return None
        if isinstance(type_, StrawberryOptional):
            type_ = type_.of_type
        if not any(type_ is scalar for scalar in _SCALARS) or argument.python_name is None:
            return None
        pairs.append((config.name_converter.from_argument(argument), argument.python_name))
    return pairs


def _reads_variables(node: Node) -> bool:
    if isinstance(node, VariableNode):
        return True
    if isinstance(node, FieldNode):
        return any(_reads_variables(argument.value) for argument in node.arguments or ())
    if isinstance(node, ListValueNode):
        return any(_reads_variables(value) for value in node.values)
    if isinstance(node, ObjectValueNode):
        return any(_reads_variables(f.value) for f in node.fields)
    return False


def _invoker(resolver: Any) -> tuple[Invoke, Callable[..., Any], str]:
    """Call the resolver function directly, the way Strawberry's wrapper would, minus the wrapper.

    Returns the call as a function, the resolver function, and the calling convention ("", "source",
    "info" or "source, info": the positional parameters before the GraphQL arguments).
    """
    func = resolver_function(resolver)
    if isinstance(func, (classmethod, staticmethod)):
        raise Unsupported("class/static method resolvers")
    reserved: dict[str, str] = {}
    for role in ("self_parameter", "root_parameter", "parent_parameter", "info_parameter"):
        parameter = getattr(resolver, role, None)
        if parameter is not None:
            reserved[parameter.name] = role
    params = list(inspect.signature(func).parameters.values())
    leading = [p.name for p in params[: len(reserved)]]
    positional = all(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[: len(reserved)]
    ) and set(leading) == set(reserved)
    if not positional:
        raise Unsupported("resolver with reserved parameters after its arguments")
    roles = tuple(reserved[name] for name in leading)
    source_roles = ("self_parameter", "root_parameter", "parent_parameter")
    if roles == ():
        return (lambda source, info, args: func(**args)), func, ""
    if len(roles) == 1 and roles[0] in source_roles:
        return (lambda source, info, args: func(source, **args)), func, "source"
    if roles == ("info_parameter",):
        return (lambda source, info, args: func(info, **args)), func, "info"
    if len(roles) == 2 and roles[0] in source_roles and roles[1] == "info_parameter":
        return (lambda source, info, args: func(source, info, **args)), func, "source, info"
    raise Unsupported(f"resolver parameters {roles}")
