"""Optional tracing: a span per request named after the operation, in the caller's trace, SQL and Redis
spans under it, nothing when off."""

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
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL, TENANT_TABLES
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


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

redis_prefix = redis_support.redis_prefix


async def test_a_request_with_traceparent_yields_server_sql_and_redis_spans_in_that_trace(
    database_url: str, pool: asyncpg.Pool, redis_prefix: str
) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    # Redis configured: the quota stage admits the request there.
    settings = http_settings(database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    app = create_app(settings, tracer=provider.get_tracer("test"))
    headers = {
        **bearer("teacher", teacher_id, org),
        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
        "tracestate": "lb=frontdoor",
    }
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/graphql", json=QUERY, headers=headers)
        assert response.status == 200
        assert (await response.json())["data"] == {"viewer": {"teacher": {"displayName": "T. Teacher"}}}
        joined = exporter.get_finished_spans()
        exporter.clear()
        # Without (or with a malformed) traceparent the request starts a trace of its own.
        for extra in ({}, {"traceparent": "00-not-a-trace-01"}):
            response = await client.post(
                "/graphql", json=QUERY, headers={**bearer("teacher", teacher_id, org), **extra}
            )
            assert response.status == 200
        fresh = exporter.get_finished_spans()

    [server] = [s for s in joined if s.kind is SpanKind.SERVER]
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert server.context.trace_state.get("lb") == "frontdoor"
    children = [s for s in joined if s.kind is SpanKind.CLIENT]
    systems = {str(s.attributes["db.system"]) for s in children if s.attributes}
    assert systems == {"postgresql", "redis"}, "SQL and Redis spans both"
    for span in children:
        assert f"{span.context.trace_id:032x}" == CALLER_TRACE
        assert span.parent is not None and span.parent.span_id == server.context.span_id
    redis_ops = {
        s.attributes["db.operation.name"]
        for s in children
        if s.attributes and s.attributes["db.system"] == "redis"
    }
    assert "admit" in redis_ops, redis_ops  # the per-user quota, counted in Redis

    fresh_servers = [s for s in fresh if s.kind is SpanKind.SERVER]
    assert len(fresh_servers) == 2
    for span in fresh_servers:
        assert span.parent is None
        assert f"{span.context.trace_id:032x}" != CALLER_TRACE


def test_tracing_is_off_unless_configured() -> None:
    assert DEFAULT_OPTIONS.on_statement is None
    app = create_app(
        http_settings("postgresql://unused@127.0.0.1:1/none"),
    )
    assert observe.TRACER not in app
    assert app[observe.DB_OPTIONS].on_statement is None
