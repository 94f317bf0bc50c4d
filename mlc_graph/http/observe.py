"""Operations over HTTP: metrics, the JSON request log, tracing spans, replica pools, compression.

`install(app)` adds, in one place:
- one middleware (timing, in-flight and WebSocket gauges, HTTP status counts, GraphQL latency and errors,
  the request's single log line, then compression) so the hot path pays for one wrapper, not five;
- the database options (timeouts, SQL comments, slow-query hook) and the replica router that the
  admission pipeline's route stage and note_write finisher use (mlc_graph.execution.stages);
- GET /metrics (guarded by MLC_METRICS_TOKEN and/or MLC_METRICS_ALLOW);
- a startup/cleanup context for the replica pools and their probe;
- a cleanup hook writing the request log lines still buffered for the last loop turn.
WebSocket connections reach their handler through GET /graphql's (mlc_graph.http.view), inside every
middleware, so they pass through this one and are counted in the WebSocket gauge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from mlc_graph.http.compression import maybe_compress
from mlc_graph.keys import PIPELINE, POOL, REALTIME, REQUEST_ID, SETTINGS
from mlc_graph.observability.access import close_record, error_codes_of, open_record
from mlc_graph.observability.logs import AccessRecord, flush_request_log, log_access
from mlc_graph.observability.metrics import Metrics, MetricsGuard, metrics_handler
from mlc_graph.platform import redis as redis_client
from mlc_graph.platform.db import DbOptions, create_pool
from mlc_graph.platform.replicas import LocalMarks, RedisMarks, Replica, ReplicaRouter, WriteMarks
from mlc_graph.realtime import pubsub

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", Metrics)
# Set (before this feature installs) to trace with a given tracer, e.g. an in-memory one in tests;
# otherwise MLC_TRACING=1 makes one that exports over OTLP (mlc_graph.observability.tracing).
TRACER: web.AppKey[Any] = web.AppKey("tracer")
DB_OPTIONS = web.AppKey("db_options", DbOptions)
ROUTER = web.AppKey("replica_router", ReplicaRouter)

SERVER_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"})
QUOTA_CODES = frozenset({"RATE_LIMITED", "SESSION_LIMIT", "QUOTA_EXCEEDED"})
_ERRORS_MARK = b'"errors"'


def error_codes(body: bytes) -> tuple[str, ...]:
    """The `extensions.code` of each error in a JSON response body (parsed only when it has errors)."""
    if _ERRORS_MARK not in body:
        return ()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ()
    return error_codes_of(payload)


def _outcome(status: int, codes: Iterable[str]) -> str:
    codes = tuple(codes)
    if status >= 500 or SERVER_CODES.intersection(codes):
        return "error"
    if codes or status >= 400:
        return "rejected"
    return "ok"


def _document_cache_sync(app: web.Application, metrics: Metrics) -> Callable[[], None]:
    """Carry the document cache's own hit and miss tallies into the cache counter at scrape time."""
    hits = metrics.cache_requests.labels("document", "hit")
    misses = metrics.cache_requests.labels("document", "miss")
    seen = [0, 0]

    def sync() -> None:
        cache = app[PIPELINE].cache
        # A cleared or replaced cache may restart its tallies: count from there rather than go backwards.
        hit_delta = cache.hits - seen[0] if cache.hits >= seen[0] else cache.hits
        miss_delta = cache.misses - seen[1] if cache.misses >= seen[1] else cache.misses
        hits.inc(hit_delta)
        misses.inc(miss_delta)
        seen[:] = [cache.hits, cache.misses]

    return sync


def _subscriptions_sync(app: web.Application, metrics: Metrics) -> Callable[[], None]:
    """Active subscriptions of this process, asked of the real-time feature's fan-out at scrape time."""

    def sync() -> None:
        realtime = app.get(REALTIME)
        if realtime is not None:
            metrics.subscriptions.set(realtime.updates.local_subscribers)

    return sync


def _middleware(app: web.Application, metrics: Metrics) -> Middleware:
    settings = app[SETTINGS]
    request_log = settings.request_log
    compression = settings.compression
    tracer = app.get(TRACER)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        record = AccessRecord(request.get(REQUEST_ID, ""), request.method, request.path)
        token = open_record(record)
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        gauge = metrics.websocket_connections if websocket else metrics.inflight
        gauge.inc()
        response: web.StreamResponse | None = None
        span = trace_token = None
        if tracer is not None:
            span, trace_token = _start_request_span(tracer, request, record)
        try:
            response = await handler(request)
            record.status = response.status
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        except Exception:
            record.status = 500  # what the request-id middleware outside turns it into
            raise
        finally:
            gauge.dec()
            close_record(token)
            if span is not None:
                _end_request_span(span, trace_token, record)
            seconds = time.perf_counter() - started
            record.duration_ms = seconds * 1000
            metrics.count_response(record.status)
            if not websocket and record.path == "/graphql":
                _observe_graphql(metrics, record, response, seconds)
            if request_log:
                log_access(record)
        if compression and not websocket:
            return await maybe_compress(request, response)
        return response

    return observe


def _start_request_span(tracer: Any, request: web.Request, record: AccessRecord) -> tuple[Any, Any]:
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind

    from mlc_graph.observability.tracing import incoming_context

    span = tracer.start_span(
        f"{request.method} {request.path}",
        context=incoming_context(request.headers),  # joins the caller's trace (W3C traceparent)
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "url.path": request.path,
            "mlc.request_id": record.request_id,
        },
    )
    return span, context.attach(trace.set_span_in_context(span))


def _end_request_span(span: Any, token: Any, record: AccessRecord) -> None:
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    if record.operation_type is not None:
        span.update_name(f"{record.operation_type} {record.operation or 'anonymous'}")
        span.set_attribute("graphql.operation.type", record.operation_type)
        span.set_attribute("graphql.operation.name", record.operation or "")
    span.set_attribute("http.response.status_code", record.status)
    if record.status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    context.detach(token)


def _observe_graphql(
    metrics: Metrics, record: AccessRecord, response: web.StreamResponse | None, seconds: float
) -> None:
    codes = record.error_codes
    if codes is None:
        # Not an answer of the GraphQL view, which notes its codes from the dict it serialized (searching
        # a 50 KB dashboard for them was 1.4 % of the server's CPU, issue 11): read them from the body.
        body = response.body if isinstance(response, web.Response) else None
        codes = error_codes(body) if isinstance(body, bytes) else ()
    if record.operation_type is None and not codes:
        return  # GraphiQL's page, or a request refused before it named an operation with no error body
    record.error_codes = codes
    for code in codes:
        if code in QUOTA_CODES:
            metrics.rate_limited.labels(code).inc()
        elif code == "SERVICE_UNAVAILABLE":
            metrics.db_unavailable.labels(record.db_target or "primary").inc()
    stats = record.stats
    metrics.observe_request(
        record.operation,
        record.category,
        seconds,
        _outcome(record.status, codes),
        codes,
        stats.statements if stats is not None else 0,
        stats.seconds if stats is not None else 0.0,
    )


async def _replicas(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    primary = app[POOL]
    metrics.add_pool("primary", primary)
    replicas: list[Replica] = []
    for n, url in enumerate(settings.database_read_urls, start=1):
        name = f"replica-{n}"
        try:
            pool = await create_pool(url, settings.pool, application_name=f"mlc-graph-{name}")
        except (OSError, TimeoutError) as exc:
            log.warning(
                "replica %s unreachable at startup (%s); reads use the primary until it answers", name, exc
            )
            pool = await create_pool(
                url, replace(settings.pool, min_size=0), application_name=f"mlc-graph-{name}"
            )
        metrics.add_pool(name, pool)
        replicas.append(Replica(name, pool))
    realtime = app.get(REALTIME)
    redis = realtime.redis if realtime is not None else None
    tracer = app.get(TRACER)
    if tracer is not None and redis is not None:
        from mlc_graph.observability.tracing import redis_span_recorder

        redis.on_call = redis_span_recorder(tracer)
    marks: WriteMarks = RedisMarks(redis) if redis is not None and redis.configured else LocalMarks()
    router = ReplicaRouter(
        primary,
        replicas,
        marks,
        window=settings.read_your_writes_seconds,
        poll_interval=settings.replica_poll_seconds,
        metrics=metrics,
    )
    app[ROUTER] = router
    await router.start()
    yield
    await router.stop()
    for replica in replicas:
        await replica.pool.close()


def install(app: web.Application) -> None:
    """App feature: see the module docstring."""
    settings = app[SETTINGS]
    metrics = Metrics()
    app[METRICS] = metrics
    on_statement = None
    if TRACER not in app and settings.tracing:
        from mlc_graph.observability.tracing import create_tracer

        app[TRACER] = create_tracer()
    if TRACER in app:
        from mlc_graph.observability.tracing import sql_span_recorder

        on_statement = sql_span_recorder(app[TRACER])
    options = DbOptions(
        acquire_timeout=settings.pool.acquire_timeout,
        report_timeout_ms=settings.pool.report_statement_timeout_ms,
        write_timeout_ms=settings.pool.write_statement_timeout_ms,
        slow_seconds=settings.slow_query_ms / 1000,
        comment_mode=settings.sql_comment,
        on_slow=lambda operation: metrics.slow_queries.labels(metrics.operation_label(operation)).inc(),
        on_statement=on_statement,
    )
    app[DB_OPTIONS] = options
    for collector in redis_client.collectors():
        metrics.register(collector)
    metrics.register(pubsub.NOTICES_DELIVERED)
    metrics.add_sync(_document_cache_sync(app, metrics))
    metrics.add_sync(_subscriptions_sync(app, metrics))
    app.middlewares.append(_middleware(app, metrics))
    guard = MetricsGuard.parse(settings.metrics_token, settings.metrics_allow, settings.production)
    app.router.add_get("/metrics", metrics_handler(metrics, guard))
    app.cleanup_ctx.append(_replicas)
    if settings.request_log:
        app.on_cleanup.append(_flush_request_log)


async def _flush_request_log(_app: web.Application) -> None:
    # The last turn's lines would be written on the loop's next turn anyway; a server that stops after
    # cleanup must not depend on one.
    flush_request_log()
