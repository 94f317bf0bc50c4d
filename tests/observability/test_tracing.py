"""Optional tracing: a span per request named after the operation, SQL spans under it, nothing when off."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mlc_graph.app import create_app
from mlc_graph.http import observe
from mlc_graph.platform.db import DEFAULT_OPTIONS
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import bearer, http_settings

QUERY = {"query": "query Me { viewer { teacher { displayName } } }"}


async def test_a_request_and_its_sql_become_spans(database_url: str, pool: asyncpg.Pool) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    app = create_app(http_settings(database_url), tracer=provider.get_tracer("test"))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/graphql", json=QUERY, headers={**bearer("teacher", teacher_id, org), "X-Request-ID": "trace-me"}
        )
        assert response.status == 200
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "query Me"
    assert server.attributes is not None
    assert server.attributes["graphql.operation.name"] == "Me"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["mlc.request_id"] == "trace-me"
    sql = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert sql, "every statement is a span"
    for span in sql:
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.attributes is not None and span.attributes["db.system"] == "postgresql"
    assert any("FROM teachers" in str(s.attributes["db.query.text"]) for s in sql if s.attributes)


def test_tracing_is_off_unless_configured() -> None:
    assert DEFAULT_OPTIONS.on_statement is None
    app = create_app(
        http_settings("postgresql://unused@127.0.0.1:1/none"),
    )
    assert observe.TRACER not in app
    assert app[observe.DB_OPTIONS].on_statement is None
