"""Optional OpenTelemetry tracing: off unless MLC_TRACING=1, then spans per request, SQL statement and
Redis call, in the caller's trace.

Spans: a SERVER span per HTTP request, a child of the caller's span when the request carries a W3C
`traceparent` (and `tracestate`; the propagators are the standard OTEL_PROPAGATORS, W3C trace context
and baggage by default), renamed `<type> <operation>` once the GraphQL operation is known (attributes
`graphql.operation.name`, `graphql.operation.type`, `http.response.status_code`, `mlc.request_id`);
under it a CLIENT span per SQL statement (`db.system` postgresql, `db.operation.name`, `db.query.text`
with `$n` placeholders only, so no values) and one per Redis call (`db.system` redis,
`db.operation.name` the logical operation such as `admit` or `leaderboard_read`, error status when it
failed). They are exported over OTLP/HTTP to the collector the standard variables name
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), in batches off the request path. Install the
`otel` extra (`pip install 'mlc-graph[otel]'`; the Docker image has it) to use it; with tracing off
nothing here runs and the hot path pays one `is None` check per statement and Redis call.

Why by hand rather than OpenTelemetry's aiohttp-server, asyncpg and redis instrumentation packages:
the asyncpg and redis ones patch the libraries' classes for the whole process (every app and pool in
it, against the no-singletons rule the tests rely on), they pin the SDK to an older release than the
one we test, and they cost more per request (docs/OPERATIONS.md "Tracing" has the measurement).
The database boundary and the Redis state already time every call, so a span there is a few lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from mlc_graph.platform.sqlcomment import normalize

INSTRUMENTATION = "mlc_graph"


def create_tracer() -> Tracer:
    """A tracer exporting over OTLP/HTTP in batches (the SDK and exporter come with the `otel` extra)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "mlc-graph")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer(INSTRUMENTATION)


def incoming_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace context from the request headers (empty when there is none or it is invalid)."""
    return propagate.extract(headers)


def sql_span_recorder(tracer: Tracer) -> Callable[[str, float], None]:
    """A callback for the executor: a finished statement becomes a span under the current request's."""

    def record(sql: str, elapsed: float) -> None:
        end = time.time_ns()
        text = normalize(sql)
        operation = text.split(None, 1)[0].upper() if text else "SQL"
        span = tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            start_time=end - int(elapsed * 1e9),
            attributes={"db.system": "postgresql", "db.operation.name": operation, "db.query.text": text},
        )
        span.end(end_time=end)

    return record


def redis_span_recorder(tracer: Tracer) -> Callable[[str, float, bool], None]:
    """A callback for RedisState: a finished call becomes a span under the current request's."""

    def record(operation: str, elapsed: float, failed: bool) -> None:
        end = time.time_ns()
        span = tracer.start_span(
            f"redis {operation}",
            kind=SpanKind.CLIENT,
            start_time=end - int(elapsed * 1e9),
            attributes={"db.system": "redis", "db.operation.name": operation},
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, "Redis unavailable"))
        span.end(end_time=end)

    return record


__all__ = [
    "INSTRUMENTATION",
    "SpanKind",
    "Tracer",
    "create_tracer",
    "incoming_context",
    "redis_span_recorder",
    "sql_span_recorder",
    "trace",
]
