"""How long, and by whom, an operation's answer may be cached: the schema's @cacheControl hints applied
to its selection, once per document (the document cache keeps the verdict with the parsed document).

Apollo Server's rules (https://www.apollographql.com/docs/apollo-server/performance/caching), applied to
every field that may run rather than to those that did:
- a field's hint is its own @cacheControl over its return type's (object, interface or union);
- a field with no maxAge is 0 (not cacheable) when it is a root field or returns an object, interface or
  union, unless it or its type says inheritMaxAge; a scalar or enum field takes its parent's;
- the answer's maxAge is the lowest of its fields', its scope PRIVATE when any field's is;
- no maxAge at all (only `__typename`) or 0 means not cacheable; so do `__schema` and `__type`
  (introspection is per environment), and every mutation and subscription.
Conservative where the static view cannot know: a field under `@skip`/`@include` counts unless a literal
leaves it out, and a field selected on an interface or union counts the hints of every type it may be.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_composite_type,
    value_from_ast_untyped,
)
from graphql.language import DirectiveNode

from mlc_graph.execution.compiled.compat import DEFINITION_BACKREF, schema_directive_name

DIRECTIVE = "cacheControl"
_UNCACHEABLE_INTROSPECTION = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """A cacheable answer's policy: max-age in seconds (above 0) and whether shared caches may keep it."""

    max_age: int
    public: bool

    @property
    def cache_control(self) -> str:
        return f"{'public' if self.public else 'private'}, max-age={self.max_age}"


@dataclass(frozen=True, slots=True)
class Hint:
    """One @cacheControl: None where it says nothing."""

    max_age: int | None = None
    private: bool | None = None
    inherit_max_age: bool = False


def _hint(arguments: Mapping[str, Any]) -> Hint:
    max_age = arguments.get("maxAge")
    scope = arguments.get("scope")
    scope = getattr(scope, "value", scope)  # a Strawberry enum member, or the SDL's name
    return Hint(
        max_age=max_age if isinstance(max_age, int) and not isinstance(max_age, bool) else None,
        private=(scope == "PRIVATE") if scope in ("PUBLIC", "PRIVATE") else None,
        inherit_max_age=arguments.get("inheritMaxAge") is True,
    )


def _declared(element: Any) -> Hint | None:
    """The @cacheControl of a Strawberry type or field, or of one built from SDL (tests)."""
    definition = (getattr(element, "extensions", None) or {}).get(DEFINITION_BACKREF)
    for directive in getattr(definition, "directives", None) or ():
        if schema_directive_name(directive) == DIRECTIVE:
            # Unset arguments are Strawberry's UNSET: _hint keeps only real values.
            return _hint(
                {
                    "maxAge": getattr(directive, "max_age", None),
                    "scope": getattr(directive, "scope", None),
                    "inheritMaxAge": getattr(directive, "inherit_max_age", None),
                }
            )
    node = getattr(element, "ast_node", None)
    for directive_node in getattr(node, "directives", None) or ():
        if directive_node.name.value == DIRECTIVE:
            return _hint(_arguments(directive_node))
    return None


def _arguments(node: DirectiveNode) -> dict[str, Any]:
    return {arg.name.value: value_from_ast_untyped(arg.value) for arg in node.arguments or ()}


@dataclass(slots=True)
class _Policy:
    """The running verdict over the fields seen so far."""

    max_age: int | None = None
    private: bool = False

    def restrict(self, max_age: int | None, private: bool) -> None:
        if max_age is not None and (self.max_age is None or max_age < self.max_age):
            self.max_age = max_age
        self.private = self.private or private

    @property
    def closed(self) -> bool:
        return self.max_age == 0


def _excluded(node: SelectionNode) -> bool:
    """True only when a literal @skip(if: true) or @include(if: false) leaves the selection out."""
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        for argument in directive.arguments or ():
            value = argument.value
            if (
                argument.name.value == "if"
                and isinstance(value, BooleanValueNode)
                and value.value is (name == "skip")
            ):
                return True
    return False


class CacheHints:
    """The schema's hints, read once at start-up; `policy` applies them to one operation."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self._types: dict[str, Hint] = {}
        for name, type_ in schema.type_map.items():
            if not name.startswith("__") and is_composite_type(type_):
                hint = _declared(type_)
                if hint is not None:
                    self._types[name] = hint
        # (parent type, field, root) -> what the field restricts; filled on first use.
        self._fields: dict[tuple[str, str, bool], tuple[int | None, bool]] = {}

    def policy(
        self, operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
    ) -> CachePolicy | None:
        """The answer's policy, or None when it may not be cached at all."""
        if operation.operation is not OperationType.QUERY:
            return None
        root = self.schema.query_type
        if root is None:
            return None
        walk = _Walk(self, fragments)
        walk.selections(operation.selection_set, root, root=True)
        verdict = walk.verdict
        if verdict.max_age is None or verdict.max_age <= 0:
            return None
        return CachePolicy(verdict.max_age, public=not verdict.private)

    def definitions(
        self, parent: GraphQLCompositeType, name: str
    ) -> Iterable[tuple[GraphQLCompositeType, GraphQLField]]:
        """The field as declared on `parent` and, on an abstract type, on every type it may be."""
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field = parent.fields.get(name)
            if field is not None:
                yield parent, field
        if is_abstract_type(parent):
            assert isinstance(parent, GraphQLInterfaceType | GraphQLUnionType)
            for possible in self.schema.get_possible_types(parent):
                field = possible.fields.get(name)
                if field is not None:
                    yield possible, field

    def restriction(
        self, owner: GraphQLCompositeType, name: str, field: GraphQLField, root: bool
    ) -> tuple[int | None, bool]:
        key = (owner.name, name, root)
        known = self._fields.get(key)
        if known is None:
            known = self._fields[key] = self._compute(field, root)
        return known

    def _compute(self, field: GraphQLField, root: bool) -> tuple[int | None, bool]:
        target = get_named_type(field.type)
        composite = is_composite_type(target)
        max_age: int | None = None
        private = False
        inherit = False
        type_hint = self._types.get(target.name) if composite else None
        if type_hint is not None:
            max_age = type_hint.max_age
            private = bool(type_hint.private)
            inherit = type_hint.inherit_max_age
        field_hint = _declared(field)
        if field_hint is not None:
            if field_hint.inherit_max_age and max_age is None:
                inherit = True
            elif field_hint.max_age is not None:
                max_age = field_hint.max_age
            if field_hint.private is not None:
                private = field_hint.private
        if max_age is None and (root or (composite and not inherit)):
            max_age = 0
        return max_age, private


class _Walk:
    """One operation's selection, walked with its fragments; fields narrow `verdict` as they are met."""

    __slots__ = ("fragments", "hints", "seen", "verdict")

    def __init__(self, hints: CacheHints, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.hints = hints
        self.fragments = fragments
        self.seen: set[tuple[str, bool]] = set()
        self.verdict = _Policy()

    def selections(
        self, selection_set: SelectionSetNode, parent: GraphQLCompositeType, *, root: bool
    ) -> None:
        for selection in selection_set.selections:
            if self.verdict.closed:
                return
            if _excluded(selection):
                continue
            if isinstance(selection, FieldNode):
                self.field(selection, parent, root=root)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition, fragment_selection = selection.type_condition, selection.selection_set
            else:
                assert isinstance(selection, FragmentSpreadNode)
                key = (selection.name.value, root)
                fragment = self.fragments.get(selection.name.value)
                if fragment is None or key in self.seen:
                    continue  # a fragment adds the same fields wherever it is spread: once is enough
                self.seen.add(key)
                condition, fragment_selection = fragment.type_condition, fragment.selection_set
            schema = self.hints.schema
            target = schema.get_type(condition.name.value) if condition is not None else parent
            if not is_composite_type(target):
                self.verdict.restrict(0, False)  # cannot happen in a validated document: refuse to guess
                return
            self.selections(fragment_selection, target, root=root)

    def field(self, node: FieldNode, parent: GraphQLCompositeType, *, root: bool) -> None:
        name = node.name.value
        if name == "__typename":
            return
        if name in _UNCACHEABLE_INTROSPECTION:
            self.verdict.restrict(0, False)
            return
        definitions = list(self.hints.definitions(parent, name))
        if not definitions:
            self.verdict.restrict(0, False)
            return
        for owner, definition in definitions:
            self.verdict.restrict(*self.hints.restriction(owner, name, definition, root))
        if node.selection_set is not None:
            target = get_named_type(definitions[0][1].type)
            if is_composite_type(target):
                self.selections(node.selection_set, target, root=False)


__all__ = ["CacheHints", "CachePolicy", "Hint"]
