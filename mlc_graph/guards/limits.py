"""Static request limits: one pass over the parsed document, before graphql-core's validation.

Each refusal carries its own `extensions.code`:
    QUERY_TOO_DEEP            fields nested deeper than max_depth (fragments expanded, Relay wrappers count)
    TOO_MANY_ALIASES          more aliased fields in the document than max_aliases
    TOO_MANY_DIRECTIVES       more directives on one field or fragment than max_directives_per_field
    TOO_MANY_REPEATED_FIELDS  one response key selected more than max_repeated_fields times in one object
Introspection bombs (`__schema { types { fields { type { fields ...`) are refused by graphql-core's own
MaxIntrospectionDepthRule, one of its specified rules (GRAPHQL_VALIDATION_FAILED).
    TOKEN_LIMIT_EXCEEDED      more than max_tokens tokens (comments included, as the parser counts them)
    DOCUMENT_TOO_LARGE        a document longer than max_document_chars (lexing costs per character)
The token limit is enforced twice: the parser stops at max_tokens (execution.pipeline), and before that
`TokenLimit` counts tokens with one C-speed regex, stopping at the limit: graphql-core's lexer costs tens of
microseconds per token, so a 5,000-token attack would otherwise cost a parse of 5,000 tokens each time.
Body size and batching are the view's.

Why a plain walk rather than validation rules: `graphql.validate` with *no* rules costs ~30 us per AST node
(TypeInfo plus the parallel visitor), and the specified rules cost several times that on `{ a a a ... }`
documents (overlapping-fields merging). Running the limits first, alone, is what makes an attack cheap to
refuse. The verdict is still computed once per document text: the pipeline caches it with the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

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

from mlc_graph.platform.config import Settings
from mlc_graph.platform.errors import Refusal

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


# One alternative per GraphQL token kind (strings and block strings whole), plus comments, which the parser's
# max_tokens counts too. Anything else (whitespace, commas, invalid characters) is not counted, so the count
# never exceeds the parser's: a document refused here would also be refused by the parser, only later.
_TOKEN = re.compile(
    r'"""(?:\\"""|[^"]|"(?!""))*"""|"(?:\\.|[^"\\\n])*"|#[^\n\r]*|\.\.\.|[!$&():=@\[\]{|}]'
    r"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[_A-Za-z][_0-9A-Za-z]*"
)


def exceeds_tokens(text: str, limit: int) -> bool:
    """Whether `text` has more than `limit` tokens; stops counting as soon as it knows."""
    if len(text) <= limit:  # every token is at least one character
        return False
    return next(islice(_TOKEN.finditer(text), limit, None), None) is not None


PRESCAN_MIN_CHARS = 2000  # below this, parsing is cheaper than scanning twice


def prescan(text: str, limits: Limits, max_tokens: int) -> GraphQLError | None:
    """The first limit a document certainly breaks, read from its tokens without building an AST.

    A lower bound of the AST checks: inline fragments are not merged into their parent, fragment spreads
    not counted as keys, depth not judged (braces of inline fragments would overstate it), so whatever it
    refuses `check_document` would refuse too; it only spares the parse.
    """
    parens = braces = aliases = directives = tokens = 0
    keys: list[dict[str, int]] = []
    after = ""  # "@" directive name next, ":" aliased field name next, "..." spread or "on" next, "on"
    for match in _TOKEN.finditer(text):
        tokens += 1
        if tokens > max_tokens:
            return _error(f"The document has more than {max_tokens} tokens.", "TOKEN_LIMIT_EXCEEDED")
        lexeme = match.group()
        first = lexeme[0]
        if first == "(":
            parens += 1
        elif first == ")":
            parens = max(0, parens - 1)
        elif parens or first == "#":
            continue  # arguments, variable definitions and comments hold no selections
        elif first == "{":
            braces += 1
            keys.append({})
            directives, after = 0, ""
        elif first == "}":
            braces = max(0, braces - 1)
            if keys:
                keys.pop()
            directives, after = 0, ""
        elif not braces:
            continue  # operation and fragment headers
        elif first == ":":
            aliases += 1
            if aliases > limits.max_aliases:
                return _error(
                    f"The document uses more than {limits.max_aliases} aliases.", "TOO_MANY_ALIASES"
                )
            after = ":"
        elif first == "@":
            directives += 1
            if directives > limits.max_directives:
                return _error(
                    f"A field or fragment carries more than {limits.max_directives} directives.",
                    "TOO_MANY_DIRECTIVES",
                )
            after = "@"
        elif lexeme == "...":
            directives, after = 0, "..."
        elif first == "_" or first.isalpha():
            if after == "..." and lexeme == "on":
                after = "on"
            elif after:
                after = ""  # a directive, aliased field, spread or type-condition name: not a new key
            else:
                directives = 0
                times = keys[-1].get(lexeme, 0) + 1 if keys else 1
                if keys:
                    keys[-1][lexeme] = times
                if times > limits.max_repeated_fields:
                    return _error(
                        f"'{lexeme}' is selected more than {limits.max_repeated_fields} times in one object.",
                        "TOO_MANY_REPEATED_FIELDS",
                    )
    return None


class TextLimits:
    """Before-parse stage: refuse what the text alone proves abusive before graphql-core's lexer sees it."""

    def __init__(self, limits: Limits, max_tokens: int, max_chars: int) -> None:
        self.limits = limits
        self.max_tokens = max_tokens
        self.max_chars = max_chars

    def check(self, text: str | None) -> None:
        """Raise `Refusal` when the text alone is over a limit."""
        if text is None or len(text) < PRESCAN_MIN_CHARS:
            return
        if len(text) > self.max_chars:
            # The lexer reads strings and whitespace one character at a time (~0.5 us each): a document
            # of one 900 KB string is 5 tokens yet costs half a second to parse. Data goes in variables.
            raise Refusal(
                _error(
                    f"The document is longer than {self.max_chars} characters: pass data in variables.",
                    "DOCUMENT_TOO_LARGE",
                    maxChars=self.max_chars,
                )
            )
        error = prescan(text, self.limits, self.max_tokens)
        if error is not None:
            raise Refusal(error)


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
