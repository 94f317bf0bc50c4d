"""Parsed and validated documents, cached by their text (bounded LRU), with the static limits applied.

A document's verdict (parse errors, limit errors, validation errors) is computed once per distinct text
and cached with it, so a repeated abusive document costs a dictionary lookup; so is each query's cache
policy (mlc_graph.execution.cache_policy), whichever executor later runs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule

from mlc_graph.execution.cache_policy import CacheHints, CachePolicy

# Documents longer than this are parsed every time instead of cached: the cache is bounded by count, and
# a handful of megabyte-sized documents must not be able to pin memory.
MAX_CACHED_DOCUMENT_CHARS = 100_000
INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})

DocumentCheck = Callable[[DocumentNode], list[GraphQLError]]


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document with its validation verdict and its operations by name (None: the only operation)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    operations: Mapping[str | None, OperationDefinitionNode]
    introspection_only: frozenset[str | None]
    # Only the operations whose answer may be cached (queries with a max age above 0).
    cache_policies: Mapping[str | None, CachePolicy] = field(default_factory=dict)


class DocumentCache:
    """Bounded LRU of parsed, validated documents keyed by their text; counts hits for tests and metrics."""

    __slots__ = ("_entries", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(0, maxsize)
        self._entries: OrderedDict[str, ParsedDocument] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> ParsedDocument | None:
        entry = self._entries.get(text)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(text)
        return entry

    def put(self, text: str, entry: ParsedDocument) -> None:
        if self.maxsize == 0 or len(text) > MAX_CACHED_DOCUMENT_CHARS:
            return
        self._entries[text] = entry
        self._entries.move_to_end(text)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _top_level_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode], seen: set[str]
) -> Iterable[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _top_level_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                seen.add(name)
                yield from _top_level_fields(fragment.selection_set, fragments, seen)


def _is_introspection_only(
    operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> bool:
    if operation.operation is not OperationType.QUERY:
        return False
    names = list(_top_level_fields(operation.selection_set, fragments, set()))
    return bool(names) and all(name in INTROSPECTION_FIELDS for name in names)


def _parse_error(error: GraphQLError) -> GraphQLError:
    code = "TOKEN_LIMIT_EXCEEDED" if "tokens" in error.message else "GRAPHQL_PARSE_FAILED"
    return GraphQLError(
        error.message, source=error.source, positions=error.positions, extensions={"code": code}
    )


def _validation_error(error: GraphQLError) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    return GraphQLError(
        error.message,
        error.nodes,
        error.source,
        error.positions,
        extensions={**(error.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"},
    )


class Documents:
    """Parse, apply the static checks, validate; one instance per app, shared by every transport."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        production: bool,
        cache_size: int,
        max_tokens: int | None = None,
        checks: Sequence[DocumentCheck] = (),
        rules: Sequence[type[ASTValidationRule]] = (),
    ) -> None:
        self.schema = schema
        self.production = production
        self.max_tokens = max_tokens
        self.cache = DocumentCache(cache_size)
        self.cache_hints = CacheHints(schema)
        self._rules: list[type[ASTValidationRule]] = [*specified_rules, *rules]
        if production:
            self._rules.append(NoSchemaIntrospectionCustomRule)
        self._checks = list(checks)

    def get(self, text: str) -> ParsedDocument:
        """The parsed and validated document for `text`, from the cache when it was seen before."""
        entry = self.cache.get(text)
        if entry is None:
            entry = self._parse_and_validate(text)
            self.cache.put(text, entry)
        return entry

    def _parse_and_validate(self, text: str) -> ParsedDocument:
        try:
            document = parse(text, no_location=False, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return ParsedDocument(None, (_parse_error(error),), {}, frozenset())
        # Operations are indexed even when validation fails: a mutation over GET is refused with 405 on
        # its HTTP method before anything is said about the document.
        operations: dict[str | None, OperationDefinitionNode] = {}
        fragments: dict[str, FragmentDefinitionNode] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                operations[definition.name.value if definition.name else None] = definition
            elif isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = definition
        if len(operations) == 1:
            # The sole operation is also what a request without operationName means.
            operations[None] = next(iter(operations.values()))
        errors = [error for check in self._checks for error in check(document)]
        if not errors:
            errors = validate(self.schema, document, self._rules, hide_suggestions=self.production)
        if errors:
            return ParsedDocument(
                document, tuple(_validation_error(e) for e in errors), operations, frozenset()
            )
        introspective = frozenset(
            name for name, op in operations.items() if _is_introspection_only(op, fragments)
        )
        policies: dict[str | None, CachePolicy] = {}
        for name, op in operations.items():
            if name is None and op.name is not None:
                policy = policies.get(op.name.value)  # the sole operation, indexed twice: computed once
            else:
                policy = self.cache_hints.policy(op, fragments)
            if policy is not None:
                policies[name] = policy
        return ParsedDocument(document, (), operations, introspective, policies)
