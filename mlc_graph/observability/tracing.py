"""Optional OpenTelemetry tracing: off unless MLC_TRACING=1, then a span per request and per SQL statement.

Spans: a SERVER span per HTTP request, renamed `<type> <operation>` once the GraphQL operation is known
(attributes `graphql.operation.name`, `graphql.operation.type`, `http.response.status_code`,
`mlc.request_id`), and a CLIENT span per SQL statement under it (`db.system`, `db.operation.name`,
`db.query.text` with `$n` placeholders only, so no values). They are exported over OTLP/HTTP to the
collector the standard variables name (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), in batches
off the request path. Install the `otel` extra (`pip install 'mlc-graph[otel]'`) to use it; with tracing
off nothing here runs and the hot path pays one `is None` check per statement.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

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


__all__ = ["INSTRUMENTATION", "SpanKind", "Tracer", "create_tracer", "sql_span_recorder", "trace"]
