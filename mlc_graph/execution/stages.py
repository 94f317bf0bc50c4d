"""The admission pipeline: every stage an operation passes, in order, whatever transport it came by.

HTTP POST and GET, each operation of a batch and every WebSocket `subscribe` go through the same list,
built by `admission_stages` below; execution follows, then the finishers:

    stage               needs                 provides    refuses with
    1 persisted         params                query       PERSISTED_QUERY_* (APQ, trusted documents)
    2 text_limits       query                             DOCUMENT_TOO_LARGE, TOKEN_LIMIT_EXCEEDED, ...
    3 anonymous         principal                         UNAUTHENTICATED (before any parse, in production)
    4 document          query                 document    GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED,
                                              operation   static limits, METHOD_NOT_ALLOWED (GET mutation)
                                              cache       (a GET query's cache policy, kept with the document)
    5 authorize         document, principal               UNAUTHENTICATED (only introspection is anonymous)
    6 tier              principal             tier        (never: an unknown organization is the trial)
    7 route             operation, tier                   (tags the SQL, picks primary or replica)
    8 price             document, tier        price       QUERY_TOO_COMPLEX against the tier's budget
    9 quota             tier, price                       SESSION_LIMIT, RATE_LIMITED (429)
      -- execution (skipped when a stage set the result: the cost dry run) --
    finishers: report_cost (extensions.cost), remember_persisted (APQ registration), note_write
    (read-your-writes mark), each on the executed operation.

The principal comes from the transport (the HTTP Authorization header, the WebSocket connection_init).
The tier is resolved once, by the `tier` stage, before every stage that reads it; the pipeline checks
at construction that each stage's needs are provided by the transport or an earlier stage, so the
order written here is the order that runs. A stage is a small object with a `name`, the `needs` and
`provides` it declares, and `run(request)`; it refuses by raising `Refusal` (mlc_graph.platform.errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

from graphql import ExecutionResult, GraphQLError, OperationType

from mlc_graph.execution.documents import MAX_CACHED_DOCUMENT_CHARS, Documents
from mlc_graph.execution.request import OperationRequest, Price, Transport
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.guards.limits import TextLimits
from mlc_graph.guards.persisted import PersistedQueries
from mlc_graph.guards.quotas import Quotas
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.observability.access import category_of, current_record
from mlc_graph.platform.db import DbOptions
from mlc_graph.platform.errors import Refusal, request_error
from mlc_graph.platform.replicas import ReplicaRouter, user_key

# What the transport fills in before the first stage.
TRANSPORT_PROVIDES = frozenset({"params", "principal"})

INCLUDE_FIELDS_HEADER = "X-Cost-Include-Fields"
DRY_RUN_HEADER = "X-Cost-Dry-Run"


class Stage(Protocol):
    """One step of admission: reads what `needs` names, fills what `provides` names, or refuses."""

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    provides: ClassVar[frozenset[str]]

    def run(self, request: OperationRequest) -> Awaitable[None] | None: ...


class Finisher(Protocol):
    """Runs after execution (or the dry run's answer) of an admitted operation."""

    name: ClassVar[str]

    def run(self, request: OperationRequest) -> Awaitable[None] | None: ...


def check_order(stages: Sequence[Stage]) -> None:
    """Refuse to build a pipeline in which a stage reads what no earlier stage (or transport) provides."""
    known = set(TRANSPORT_PROVIDES)
    for stage in stages:
        missing = stage.needs - known
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {sorted(missing)} before any stage provides it")
        known |= stage.provides


def _unauthenticated() -> Refusal:
    return Refusal(
        request_error("Authentication required: send 'Authorization: Bearer <token>'", "UNAUTHENTICATED"),
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="mlc-graph"'},
    )


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes"}


# --- the stages, in the order admission_stages lists them -------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistedStage:
    """APQ and trusted documents: the document text from its hash (or the hash checked against it)."""

    name: ClassVar[str] = "persisted"
    needs: ClassVar[frozenset[str]] = frozenset({"params"})
    provides: ClassVar[frozenset[str]] = frozenset({"query"})
    persisted: PersistedQueries

    async def run(self, request: OperationRequest) -> None:
        params = request.params
        params.query = await self.persisted.resolve(params.query, params.extensions)


@dataclass(frozen=True, slots=True)
class TextLimitsStage:
    """What the text alone proves abusive, refused before graphql-core's lexer sees it."""

    name: ClassVar[str] = "text_limits"
    needs: ClassVar[frozenset[str]] = frozenset({"query"})
    provides: ClassVar[frozenset[str]] = frozenset()
    limits: TextLimits

    def run(self, request: OperationRequest) -> None:
        self.limits.check(request.params.query)


@dataclass(frozen=True, slots=True)
class AnonymousStage:
    """Where nothing is open to anonymous callers (production), refuse them before spending a parse."""

    name: ClassVar[str] = "anonymous"
    needs: ClassVar[frozenset[str]] = frozenset({"principal"})
    provides: ClassVar[frozenset[str]] = frozenset()
    allow_introspection: bool

    def run(self, request: OperationRequest) -> None:
        if request.context.principal is None and not self.allow_introspection:
            raise _unauthenticated()


@dataclass(frozen=True, slots=True)
class DocumentStage:
    """The parsed, validated document (cached by text), the operation the request names, and for a GET
    over HTTP its cache policy (mlc_graph.http.caching sends it; every other answer is no-store)."""

    name: ClassVar[str] = "document"
    needs: ClassVar[frozenset[str]] = frozenset({"query"})
    provides: ClassVar[frozenset[str]] = frozenset({"document", "operation", "cache"})
    documents: Documents

    def run(self, request: OperationRequest) -> None:
        text = request.params.query
        if text is None:
            raise Refusal(
                request_error("The request has no 'query'", "BAD_REQUEST"), status=400, legacy_status=400
            )
        parsed = self.documents.get(text)
        name = request.params.operation_name
        operation = parsed.operations.get(name)
        if (
            operation is not None
            and request.method == "GET"
            and operation.operation is not OperationType.QUERY
        ):
            # GET never changes state (spec and CSRF safety): mutations must be POSTed.
            raise Refusal(
                request_error("Only queries may be sent with GET; POST mutations", "METHOD_NOT_ALLOWED"),
                status=405,
                legacy_status=405,
                headers={"Allow": "POST"},
            )
        if parsed.errors:
            raise Refusal(parsed.errors)
        if operation is None:
            message = (
                f"Unknown operation named '{name}'"
                if name is not None
                else "The document has several operations: send 'operationName'"
            )
            raise Refusal(request_error(message, "BAD_REQUEST"))
        if operation.operation is OperationType.SUBSCRIPTION and request.transport is not Transport.WEBSOCKET:
            raise Refusal(request_error("Subscriptions are served over WebSocket at /graphql", "BAD_REQUEST"))
        request.document = parsed.document
        request.operation = operation
        request.introspection_only = name in parsed.introspection_only
        if request.method == "GET" and request.transport is Transport.HTTP:
            request.cache = parsed.cache_policies.get(name)


@dataclass(frozen=True, slots=True)
class AuthorizeStage:
    """Anonymous callers may only load the schema, and only in development (GraphiQL's first request)."""

    name: ClassVar[str] = "authorize"
    needs: ClassVar[frozenset[str]] = frozenset({"document", "principal"})
    provides: ClassVar[frozenset[str]] = frozenset()
    allow_introspection: bool

    def run(self, request: OperationRequest) -> None:
        if request.context.principal is None and not (
            self.allow_introspection and request.introspection_only
        ):
            raise _unauthenticated()


@dataclass(frozen=True, slots=True)
class TierStage:
    """The caller's organization's tier, once, for every stage and resolver after it."""

    name: ClassVar[str] = "tier"
    needs: ClassVar[frozenset[str]] = frozenset({"principal"})
    provides: ClassVar[frozenset[str]] = frozenset({"tier"})
    tiers: TierResolver

    async def run(self, request: OperationRequest) -> None:
        principal = request.context.principal
        if principal is not None:
            request.context.tier = await self.tiers.tier_of(principal.org_id)


@dataclass(frozen=True, slots=True)
class RouteStage:
    """Name the operation on its SQL and in the log; queries on a replica, mutations on the primary."""

    name: ClassVar[str] = "route"
    needs: ClassVar[frozenset[str]] = frozenset({"operation", "tier"})
    provides: ClassVar[frozenset[str]] = frozenset()
    options: DbOptions
    router: Callable[[], ReplicaRouter | None]

    async def run(self, request: OperationRequest) -> None:
        operation = request.operation
        assert operation is not None  # provided by the document stage
        context = request.context
        name = request.params.operation_name or (operation.name.value if operation.name else None)
        db = context.db
        db.configure(self.options)
        db.tag(name, context.request_id)
        category = category_of(operation)
        if category == "report":
            db.use_report_timeout()
        principal = context.principal
        record = current_record()
        if record is not None:
            record.operation = name
            record.operation_type = operation.operation.value
            record.category = category
            record.stats = context.stats
            if principal is not None:
                record.role, record.user_id, record.org_id = (
                    principal.role.value,
                    principal.user_id,
                    principal.org_id,
                )
        router = self.router()
        if router is None or not router.enabled:
            return
        user = user_key(principal.role.value, principal.user_id) if principal is not None else None
        if operation.operation is OperationType.QUERY:
            route = await router.for_query(user)
        else:
            route = router.for_mutation()
        if route.target != "primary":
            db.configure(replace(self.options, pool_name=route.target), route.pool)
        if record is not None:
            record.db_target = route.target


@dataclass(frozen=True, slots=True)
class PriceStage:
    """The operation's cost, refused over the tier's per-operation budget; `X-Cost-Dry-Run` stops here."""

    name: ClassVar[str] = "price"
    needs: ClassVar[frozenset[str]] = frozenset({"document", "tier"})
    provides: ClassVar[frozenset[str]] = frozenset({"price"})
    analyzer: CostAnalyzer
    default_budget: int

    def run(self, request: OperationRequest) -> None:
        assert request.document is not None
        params = request.params
        text = params.query
        # Documents the document cache does not keep are not cached here either: no pinning megabytes.
        key = text if text is not None and len(text) <= MAX_CACHED_DOCUMENT_CHARS else None
        tier = request.context.tier
        budget = (
            tier.cost_budget if tier is not None and tier.cost_budget is not None else self.default_budget
        )
        try:
            analysis = self.analyzer.analyze(request.document, params.variables, params.operation_name, key)
            analysis.check(budget)
        except GraphQLError as error:
            raise Refusal(error) from error
        request.price = Price(analysis, budget)
        if _truthy(request.headers.get(DRY_RUN_HEADER)) or (params.extensions or {}).get("dryRun") is True:
            request.result = ExecutionResult(data=None)  # the pipeline skips execution when a result is set


@dataclass(frozen=True, slots=True)
class QuotaStage:
    """The tier's session cap, then requests and cost points per hour, in one Redis round trip.

    The RateLimit-* headers go on the response whatever the outcome; operations refused by an earlier
    stage are never counted.
    """

    name: ClassVar[str] = "quota"
    needs: ClassVar[frozenset[str]] = frozenset({"tier", "price"})
    provides: ClassVar[frozenset[str]] = frozenset()
    quotas: Quotas

    async def run(self, request: OperationRequest) -> None:
        context = request.context
        principal, tier = context.principal, context.tier
        if principal is None or tier is None:
            return  # anonymous introspection (development only) is not metered
        cost = max(1, request.price.requested) if request.price is not None else 1
        session, result = await self.quotas.admit(principal, tier, cost)
        if result is None:
            raise Refusal.of(session.error())
        context.rate_limit = result
        context.response_headers.update(result.headers())
        if not result.allowed:
            raise Refusal.of(result.error(), result.headers())


# --- after execution ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportCost:
    """`extensions.cost`: requested and actual cost (with a per-field breakdown on request)."""

    name: ClassVar[str] = "report_cost"

    def run(self, request: OperationRequest) -> None:
        price = request.price
        if price is None:
            return
        data = request.result.data if request.result is not None else None
        include = _truthy(request.headers.get(INCLUDE_FIELDS_HEADER))
        cost = price.analysis.extension(data, price.budget, include)
        shared = request.answer_policy() if request.cache is not None else None
        if shared is not None and shared.public:
            # The budget is the caller's tier's: an answer any caller may be served leaves it out.
            del cost["budget"]
        request.context.extensions["cost"] = cost
        record = current_record()
        if record is not None:
            record.cost = cost.get("actualQueryCost")


@dataclass(frozen=True, slots=True)
class RememberPersisted:
    """APQ: a document sent with its hash is registered once it ran (valid, within limits and budget)."""

    name: ClassVar[str] = "remember_persisted"
    persisted: PersistedQueries

    async def run(self, request: OperationRequest) -> None:
        await self.persisted.remember(request.params.query, request.params.extensions)


@dataclass(frozen=True, slots=True)
class NoteWrite:
    """After a mutation, this user's next reads go to the primary until replicas have caught up."""

    name: ClassVar[str] = "note_write"
    router: Callable[[], ReplicaRouter | None]

    async def run(self, request: OperationRequest) -> None:
        router = self.router()
        principal = request.context.principal
        operation = request.operation
        if (
            router is not None
            and router.enabled
            and principal is not None
            and operation is not None
            and operation.operation is OperationType.MUTATION
        ):
            await router.note_write(user_key(principal.role.value, principal.user_id))


@dataclass(frozen=True, slots=True)
class Watch:
    """A stage that only looks: calls `see` with every operation (tests and benchmarks count with it)."""

    name: ClassVar[str] = "watch"
    needs: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()
    see: Callable[[OperationRequest], None]

    def run(self, request: OperationRequest) -> None:
        self.see(request)


@dataclass(frozen=True, slots=True)
class Admission:
    """The ordered stages and finishers of one app."""

    stages: tuple[Stage, ...]
    finishers: tuple[Finisher, ...]

    def __post_init__(self) -> None:
        check_order(self.stages)


def admission_stages(
    *,
    documents: Documents,
    persisted: PersistedQueries,
    text_limits: TextLimits,
    tiers: TierResolver,
    analyzer: CostAnalyzer,
    default_budget: int,
    quotas: Quotas,
    db_options: DbOptions,
    router: Callable[[], ReplicaRouter | None],
    allow_anonymous_introspection: bool,
) -> Admission:
    """The one list: the order here is the order every operation is admitted in (see the table above)."""
    return Admission(
        stages=(
            PersistedStage(persisted),
            TextLimitsStage(text_limits),
            AnonymousStage(allow_anonymous_introspection),
            DocumentStage(documents),
            AuthorizeStage(allow_anonymous_introspection),
            TierStage(tiers),
            RouteStage(db_options, router),
            PriceStage(analyzer, default_budget),
            QuotaStage(quotas),
        ),
        finishers=(ReportCost(), RememberPersisted(persisted), NoteWrite(router)),
    )
