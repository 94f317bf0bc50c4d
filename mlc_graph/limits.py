"""Static request limits: one pass over the parsed document, before graphql-core's validation.

Each refusal carries its own `extensions.code`:
    QUERY_TOO_DEEP            fields nested deeper than max_depth (fragments expanded, Relay wrappers count)
    TOO_MANY_ALIASES          more aliased fields in the document than max_aliases
    TOO_MANY_DIRECTIVES       more directives on one field or fragment than max_directives_per_field
    TOO_MANY_REPEATED_FIELDS  one response key selected more than max_repeated_fields times in one object
Introspection bombs (`__schema { types { fields { type { fields ...`) are refused by graphql-core's own
MaxIntrospectionDepthRule, one of its specified rules (GRAPHQL_VALIDATION_FAILED).
The token limit is the parser's (`max_tokens`, mlc_graph.pipeline), so a huge document is refused before an
AST is built; body size and batching are the view's.

Why a plain walk rather than validation rules: `graphql.validate` with *no* rules costs ~30 us per AST node
(TypeInfo plus the parallel visitor), and the specified rules cost several times that on `{ a a a ... }`
documents (overlapping-fields merging). Running the limits first, alone, is what makes an attack cheap to
refuse. The verdict is still computed once per document text: the pipeline caches it with the document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.language import Node

from mlc_graph.config import Settings
from mlc_graph.keys import PIPELINE, SETTINGS

# Introspection is bounded by MaxIntrospectionDepthRule and the schema's own size, not by max_depth
# (GraphiQL's introspection query nests `ofType` nine levels deep).
_INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 15
    max_aliases: int = 30
    max_directives: int = 5
    max_repeated_fields: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_depth,
            settings.max_aliases,
            settings.max_directives_per_field,
            settings.max_repeated_fields,
        )


def _error(message: str, code: str, node: Node | None = None, **details: Any) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": code, **details})


class _Depth:
    """Deepest field of an operation; each fragment's depth is computed once (fragments nest linearly)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode], cap: int) -> None:
        self._fragments = fragments
        self._cap = cap  # past the limit the exact figure does not matter: stop descending
        self._known: dict[str, int] = {}
        self._visiting: set[str] = set()

    def fragment(self, name: str) -> int:
        known = self._known.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        if fragment is None or name in self._visiting:
            return 0  # unknown or cyclic: validation reports it
        self._visiting.add(name)
        depth = self.of(fragment.selection_set)
        self._visiting.discard(name)
        self._known[name] = depth
        return depth

    def of(self, selection_set: SelectionSetNode) -> int:
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value in _INTROSPECTION_ROOTS:
                    continue
                depth = 1 + (self.of(selection.selection_set) if selection.selection_set else 0)
            elif isinstance(selection, InlineFragmentNode):
                depth = self.of(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                depth = self.fragment(selection.name.value)
            else:
                continue
            deepest = max(deepest, min(depth, self._cap))
        return deepest


def check_document(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """The limit errors of a parsed document (empty when it is within every limit)."""
    errors: list[GraphQLError] = []
    operations: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    stack: list[SelectionSetNode] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
            stack.append(definition.selection_set)
        elif isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
            stack.append(definition.selection_set)
    aliases = 0
    directives_error: GraphQLError | None = None
    repeated_error: GraphQLError | None = None
    while stack:
        counts: dict[str, int] = {}
        # One object's selection: its fields and those of its inline fragments, counted together.
        same_object = [stack.pop()]
        while same_object:
            for selection in same_object.pop().selections:
                if directives_error is None and len(selection.directives or ()) > limits.max_directives:
                    directives_error = _error(
                        f"A field or fragment carries more than {limits.max_directives} directives.",
                        "TOO_MANY_DIRECTIVES",
                        selection,
                        maxDirectives=limits.max_directives,
                    )
                if isinstance(selection, FieldNode):
                    if selection.alias is not None:
                        aliases += 1
                        key = selection.alias.value
                    else:
                        key = selection.name.value
                    if selection.selection_set is not None:
                        stack.append(selection.selection_set)
                elif isinstance(selection, InlineFragmentNode):
                    same_object.append(selection.selection_set)
                    continue
                elif isinstance(selection, FragmentSpreadNode):
                    key = "..." + selection.name.value
                else:
                    continue
                times = counts.get(key, 0) + 1
                counts[key] = times
                if times > limits.max_repeated_fields and repeated_error is None:
                    repeated_error = _error(
                        f"'{key}' is selected more than {limits.max_repeated_fields} times in one object.",
                        "TOO_MANY_REPEATED_FIELDS",
                        selection,
                        maxRepeatedFields=limits.max_repeated_fields,
                    )
    if aliases > limits.max_aliases:
        errors.append(
            _error(
                f"The document uses {aliases} aliases; at most {limits.max_aliases} are allowed.",
                "TOO_MANY_ALIASES",
                maxAliases=limits.max_aliases,
            )
        )
    errors.extend(e for e in (directives_error, repeated_error) if e is not None)
    depth = _Depth(fragments, limits.max_depth + 1)
    for operation in operations:
        try:
            deepest = depth.of(operation.selection_set)
        except RecursionError:  # a chain of thousands of fragments: deep by any measure
            deepest = limits.max_depth + 1
        if deepest > limits.max_depth:
            name = f"'{operation.name.value}' " if operation.name else ""
            errors.append(
                _error(
                    f"The operation {name}is nested deeper than the maximum depth of {limits.max_depth}.",
                    "QUERY_TOO_DEEP",
                    operation,
                    maxDepth=limits.max_depth,
                )
            )
    return errors


def document_check(settings: Settings) -> Callable[[DocumentNode], list[GraphQLError]]:
    limits = Limits.from_settings(settings)
    return lambda document: check_document(document, limits)


def install(app: web.Application) -> None:
    """App feature: the limits run on every newly seen document, before validation."""
    app[PIPELINE].add_document_check(document_check(app[SETTINGS]))
