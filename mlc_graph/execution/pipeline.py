"""GraphQL execution for one request: cached parse and validation, pre-execution stages, execute, mask.

The hot path skips Strawberry's view and `schema.execute` (issue 7): documents are parsed and validated
once per distinct text (bounded LRU), and `graphql.execute` runs on the Strawberry schema's graphql-core
schema with our typed Context.

Extension point (issues 3 and 5). A request is a `PreparedRequest` that moves through three lists of
stages on `Pipeline.stages`; each stage is a plain callable (sync or async) taking the request:

    before_parse    the document text may not be known yet: persisted queries fill `req.params.query`
                    from a hash, rate limits by principal or address refuse early
    before_execute  document valid, operation and variables known: authentication of anonymous
                    callers (built in, first), then cost budgets and variable-dependent limits;
                    a stage that sets `req.result` answers in place of execution (cost dry run)
    after_execute   `req.result` known: actual cost, metrics; may add to `req.context.extensions`

A stage refuses the request by raising `RequestRefused` (errors that carry `extensions.code`, the HTTP
status, extra headers). Static limits that need nothing but the document are checks cached with it:
`Pipeline.add_document_check` (a function of the parsed document returning errors, run before
graphql-core's validation so an abusive document is refused cheaply) or `Pipeline.add_validation_rule`.

Errors reach the client as they are when they are GraphQL's own (parse, validation, coercion) or an
`ApiError`; `DatabaseUnavailableError` becomes SERVICE_UNAVAILABLE; anything else is masked as
INTERNAL_SERVER_ERROR with the request id and logged with its traceback.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
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
    execute,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule

from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.execution.context import Context
from mlc_graph.platform.db import DatabaseUnavailableError
from mlc_graph.platform.errors import ApiError

log = logging.getLogger(__name__)

# Documents longer than this are parsed every time instead of cached: the cache is bounded by count, and
# a handful of megabyte-sized documents must not be able to pin memory.
MAX_CACHED_DOCUMENT_CHARS = 100_000
INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


@dataclass(slots=True)
class GraphQLParams:
    """The four members of a GraphQL-over-HTTP request, already type-checked by the view."""

    query: str | None
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    extensions: dict[str, Any] | None = None


class RequestRefused(Exception):  # noqa: N818 - a refusal, not a bug: it is the expected outcome
    """A stage (or the pipeline) refuses the request before or instead of execution.

    `status` applies to `application/graphql-response+json`; `legacy_status` to `application/json`, where
    the spec asks for 200 on GraphQL request errors (parse, validation, variables, budgets).
    """

    def __init__(
        self,
        errors: GraphQLError | Iterable[GraphQLError],
        status: int = 400,
        legacy_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.errors = [errors] if isinstance(errors, GraphQLError) else list(errors)
        super().__init__(self.errors[0].message if self.errors else "refused")
        self.status = status
        self.legacy_status = (
            legacy_status if legacy_status is not None else (200 if status == 400 else status)
        )
        self.headers = dict(headers or {})


def request_error(message: str, code: str, **details: Any) -> GraphQLError:
    """A GraphQL request error (no path) carrying `extensions.code`."""
    return GraphQLError(message, extensions={"code": code, **details})


@dataclass(slots=True)
class PreparedRequest:
    """One operation on its way through the stages; stages read and fill it."""

    params: GraphQLParams
    context: Context
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    document: DocumentNode | None = None
    operation: OperationDefinitionNode | None = None
    introspection_only: bool = False
    result: ExecutionResult | None = None


Stage = Callable[[PreparedRequest], Awaitable[None] | None]
DocumentCheck = Callable[[DocumentNode], list[GraphQLError]]


@dataclass(slots=True)
class Stages:
    before_parse: list[Stage] = field(default_factory=list)
    before_execute: list[Stage] = field(default_factory=list)
    after_execute: list[Stage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document with its validation verdict and its operations by name (None: the only operation)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    operations: Mapping[str | None, OperationDefinitionNode]
    introspection_only: frozenset[str | None]


@dataclass(slots=True)
class Outcome:
    """What the view turns into an HTTP response."""

    body: dict[str, Any]
    status: int = 200
    legacy_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


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


class Pipeline:
    """Parse, validate, run the stages and execute one operation; one instance per app."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        production: bool,
        cache_size: int,
        max_tokens: int | None = None,
        allow_anonymous_introspection: bool = False,
        executor: str = "compiled",
    ) -> None:
        self.schema = schema
        # Issue 7: queries run on compiled plans (byte-identical to graphql-core, which they fall back to).
        self.compiled = (
            CompiledExecutor.for_schema(schema, hide_suggestions=production, cache_size=cache_size)
            if executor == "compiled"
            else None
        )
        self.production = production
        self.max_tokens = max_tokens
        self.cache = DocumentCache(cache_size)
        self.stages = Stages()
        self._rules: list[type[ASTValidationRule]] = list(specified_rules)
        if production:
            self._rules.append(NoSchemaIntrospectionCustomRule)
        self._checks: list[DocumentCheck] = []
        self.allow_anonymous_introspection = allow_anonymous_introspection
        # Built in, and first: nothing else should spend effort on a caller who will be refused anyway.
        self.stages.before_execute.append(self.require_principal)

    def add_validation_rule(self, rule: type[ASTValidationRule]) -> None:
        """Register a static limit; cached verdicts are dropped because they did not apply it."""
        self._rules.append(rule)
        self.cache.clear()

    def add_document_check(self, check: DocumentCheck) -> None:
        """Register a static limit run on the parsed document before validation (its verdict is cached)."""
        self._checks.append(check)
        self.cache.clear()

    def document(self, text: str) -> ParsedDocument:
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
        return ParsedDocument(document, (), operations, introspective)

    def require_principal(self, req: PreparedRequest) -> None:
        """Anonymous callers may only load the schema, and only in development (GraphiQL's first request)."""
        if req.context.principal is not None:
            return
        if self.allow_anonymous_introspection and req.introspection_only:
            return
        raise RequestRefused(
            request_error("Authentication required: send 'Authorization: Bearer <token>'", "UNAUTHENTICATED"),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="mlc-graph"'},
        )

    async def run(self, req: PreparedRequest) -> Outcome:
        """Run one operation to an `Outcome`; never raises (bugs are masked and logged)."""
        outcome = await self._guarded(req)
        if req.context.response_headers:
            # Headers a stage set for every response of the request (RateLimit-*), refused or not.
            outcome.headers = {**req.context.response_headers, **outcome.headers}
        return outcome

    async def _guarded(self, req: PreparedRequest) -> Outcome:
        try:
            return await self._run(req)
        except RequestRefused as refused:
            return Outcome(
                {"errors": [e.formatted for e in refused.errors]},
                refused.status,
                refused.legacy_status,
                refused.headers,
            )
        except DatabaseUnavailableError:
            log.warning("database unavailable", extra={"request_id": req.context.request_id})
            return _unavailable()
        except Exception:
            log.exception("request failed", extra={"request_id": req.context.request_id})
            error = request_error(
                "Internal server error", "INTERNAL_SERVER_ERROR", requestId=req.context.request_id
            )
            return Outcome({"errors": [error.formatted]}, 500, 500)

    async def _run(self, req: PreparedRequest) -> Outcome:
        for stage in self.stages.before_parse:
            done = stage(req)
            if done is not None:
                await done
        if req.context.principal is None and not self.allow_anonymous_introspection:
            # Nothing is open to anonymous callers here: refuse before spending a parse on them.
            self.require_principal(req)
        text = req.params.query
        if text is None:
            raise RequestRefused(
                request_error("The request has no 'query'", "BAD_REQUEST"), status=400, legacy_status=400
            )
        parsed = self.document(text)
        name = req.params.operation_name
        operation = parsed.operations.get(name)
        if operation is not None:
            require_query_over_get(req.method, operation)
        if parsed.errors:
            raise RequestRefused(parsed.errors)
        if operation is None:
            message = (
                f"Unknown operation named '{name}'"
                if name is not None
                else "The document has several operations: send 'operationName'"
            )
            raise RequestRefused(request_error(message, "BAD_REQUEST"))
        req.document = parsed.document
        req.operation = operation
        req.introspection_only = name in parsed.introspection_only
        if operation.operation is OperationType.SUBSCRIPTION:
            raise RequestRefused(
                request_error("Subscriptions are served over WebSocket at /graphql", "BAD_REQUEST")
            )
        for stage in self.stages.before_execute:
            done = stage(req)
            if done is not None:
                await done
        # A stage that already set a result (the cost dry run) answers instead of execution.
        if req.result is None and self.compiled is not None:
            req.result = await self.compiled.execute(
                parsed.document,  # type: ignore[arg-type]  # not None once validation passed
                operation,
                req.context,
                req.params.variables,
                name,
            )
        if req.result is None:
            executed = execute(
                self.schema,
                parsed.document,  # type: ignore[arg-type]  # not None once validation passed
                None,
                req.context,
                req.params.variables,
                name,
                hide_suggestions=self.production,
            )
            if isawaitable(executed):
                executed = await executed
            assert isinstance(executed, ExecutionResult)
            req.result = executed
        result = req.result
        for stage in self.stages.after_execute:
            done = stage(req)
            if done is not None:
                await done
        return self._outcome(req, result)

    def _outcome(self, req: PreparedRequest, result: ExecutionResult) -> Outcome:
        context = req.context
        body: dict[str, Any] = {}
        status = 200
        legacy_status = 200
        headers: dict[str, str] = {}
        if result.errors:
            errors = [_client_error(e, context.request_id) for e in result.errors]
            if result.data is None and all(e.path is None for e in result.errors):
                # Execution never started (variables failed to coerce): a request error, no `data` entry.
                # 400 for legacy clients too: the spec only recommends 200 there, and the product asks
                # for a 4xx on wrongly typed variables so clients and proxies see the bad request.
                status = legacy_status = 400
            else:
                body["data"] = result.data
                if _whole_response_unavailable(result.data, errors):
                    status = legacy_status = 503
                    headers["Retry-After"] = "1"
            body["errors"] = errors
        else:
            body["data"] = result.data
        if context.settings.debug_sql_count:
            context.extensions["sqlStatements"] = context.stats.statements
        if context.extensions:
            body["extensions"] = context.extensions
        return Outcome(body, status, legacy_status, headers)


def require_query_over_get(method: str, operation: OperationDefinitionNode) -> None:
    """GET never changes state (spec and CSRF safety): mutations must be POSTed."""
    if method == "GET" and operation.operation is not OperationType.QUERY:
        raise RequestRefused(
            request_error("Only queries may be sent with GET; POST mutations", "METHOD_NOT_ALLOWED"),
            status=405,
            legacy_status=405,
            headers={"Allow": "POST"},
        )


def _client_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    """The error as the client may see it: GraphQL's own and ApiErrors as they are, anything else masked."""
    original = error.original_error
    # The database's own text may name hosts or timeouts (internals): it gets a fixed message below.
    if original is None or (
        isinstance(original, GraphQLError) and not isinstance(original, DatabaseUnavailableError)
    ):
        formatted = error.formatted
        extensions = formatted.get("extensions")
        if not extensions or "code" not in extensions:
            # Without an original error this is graphql-core's own verdict: a bad variable before execution,
            # or a null in a non-null field during it (a server bug, but its message is safe).
            code = "BAD_USER_INPUT" if error.path is None or original is not None else "INTERNAL_SERVER_ERROR"
            formatted["extensions"] = {**(extensions or {}), "code": code}
        return dict(formatted)
    if isinstance(original, DatabaseUnavailableError):
        code, message = "SERVICE_UNAVAILABLE", "The database is unavailable; retry shortly"
    else:
        log.error(
            "resolver failed at %s",
            error.path,
            exc_info=original,
            extra={"request_id": request_id},
        )
        code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
    masked = GraphQLError(
        message,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        extensions={"code": code, "requestId": request_id},
    )
    return dict(masked.formatted)


def _whole_response_unavailable(data: dict[str, Any] | None, errors: list[dict[str, Any]]) -> bool:
    if data is not None and any(value is not None for value in data.values()):
        return False
    return any(e.get("extensions", {}).get("code") == "SERVICE_UNAVAILABLE" for e in errors)


def _unavailable() -> Outcome:
    error = request_error("The database is unavailable; retry shortly", "SERVICE_UNAVAILABLE")
    return Outcome({"errors": [error.formatted]}, 503, 503, {"Retry-After": "1"})


__all__ = [
    "ApiError",
    "DocumentCache",
    "DocumentCheck",
    "GraphQLParams",
    "Outcome",
    "ParsedDocument",
    "Pipeline",
    "PreparedRequest",
    "RequestRefused",
    "Stage",
    "Stages",
    "request_error",
]
