"""Prometheus text from the app's own registry: latency buckets, errors, pools, guard."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from graphql import OperationDefinitionNode, parse
from prometheus_client.parser import text_string_to_metric_families

from mlc_graph.app import create_app
from mlc_graph.http.observe import METRICS
from mlc_graph.observability.access import category_of
from mlc_graph.observability.metrics import MAX_OPERATION_LABELS, Metrics, MetricsGuard, metrics_handler
from mlc_graph.platform import redis as redis_client
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import (
    app_client,
    bearer,
    free_port,
    http_settings,
    start_server,
    stop_server,
    wait_ready,
)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_request_latency_by_operation_and_category_gives_apdex() -> None:
    metrics = Metrics()
    for seconds in (0.1, 1.0, 3.0):  # satisfied, tolerating, frustrated at T = 0.5 s
        metrics.observe_request("StudentDashboard", "read", seconds, "ok", sql_statements=4, sql_seconds=0.01)
    s = _samples(metrics)
    labels = (("category", "read"), ("operation", "StudentDashboard"))
    bucket = "mlc_graphql_request_duration_seconds_bucket"
    satisfied = s[(bucket, (*labels[:1], ("le", "0.5"), labels[1]))]
    tolerating_or_better = s[(bucket, (*labels[:1], ("le", "2.0"), labels[1]))]
    count = s[("mlc_graphql_request_duration_seconds_count", labels)]
    assert (satisfied, tolerating_or_better, count) == (1, 2, 3)
    assert (satisfied + tolerating_or_better) / 2 / count == 0.5  # Apdex
    assert s[("mlc_graphql_requests_total", (("category", "read"), ("outcome", "ok")))] == 3
    assert s[("mlc_sql_statements_per_request_sum", (("category", "read"),))] == 12


def test_errors_by_code_and_http_statuses() -> None:
    metrics = Metrics()
    metrics.observe_request("Submit", "write", 0.2, "rejected", error_codes=("BAD_USER_INPUT",))
    metrics.observe_request(None, "read", 0.2, "error", error_codes=("INTERNAL_SERVER_ERROR",))
    metrics.http_responses.labels("200").inc()
    metrics.http_responses.labels("503").inc()
    s = _samples(metrics)
    assert s[("mlc_graphql_errors_total", (("code", "BAD_USER_INPUT"),))] == 1
    assert s[("mlc_graphql_errors_total", (("code", "INTERNAL_SERVER_ERROR"),))] == 1
    assert s[("mlc_http_responses_total", (("status", "503"),))] == 1
    assert (
        "mlc_graphql_request_duration_seconds_count",
        (("category", "read"), ("operation", "anonymous")),
    ) in s


def test_operation_names_cannot_explode_the_series_count() -> None:
    metrics = Metrics()
    for n in range(MAX_OPERATION_LABELS + 50):
        metrics.observe_request(f"Op{n}", "read", 0.01, "ok")
    operations = {
        dict(labels)["operation"]
        for (name, labels) in _samples(metrics)
        if name == "mlc_graphql_request_duration_seconds_count"
    }
    assert len(operations) == MAX_OPERATION_LABELS + 1
    assert "other" in operations


async def test_pool_gauges_show_connections_in_use(clean_db: asyncpg.Pool) -> None:
    metrics = Metrics()
    metrics.add_pool("primary", clean_db)
    async with clean_db.acquire():
        s = _samples(metrics)
        assert s[("mlc_db_pool_connections", (("pool", "primary"), ("state", "in_use")))] >= 1
        assert s[("mlc_db_pool_max_connections", (("pool", "primary"),))] == clean_db.get_max_size()


def test_other_modules_counters_are_exposed() -> None:
    metrics = Metrics()
    for collector in redis_client.collectors():
        metrics.register(collector)
    text = metrics.render().decode()
    assert "mlc_redis_up" in text
    assert "mlc_websocket_connections 0.0" in text
    assert "mlc_subscriptions_active 0.0" in text


def test_guard_token_and_networks() -> None:
    assert MetricsGuard.parse(None, None).allows("203.0.113.9", None)
    token = MetricsGuard.parse("s3cret-scrape", None)
    assert token.allows("203.0.113.9", "Bearer s3cret-scrape")
    assert not token.allows("203.0.113.9", "Bearer wrong")
    assert not token.allows("203.0.113.9", None)
    nets = MetricsGuard.parse(None, "127.0.0.1/32, 10.0.0.0/8")
    assert nets.allows("10.1.2.3", None)
    assert not nets.allows("203.0.113.9", None)
    assert not nets.allows(None, None)


def test_production_without_token_or_allow_list_lets_only_loopback_scrape() -> None:
    """Issue 12 item 7: in production an unguarded /metrics answered anyone."""
    guard = MetricsGuard.parse(None, None, production=True)
    assert guard.allows("127.0.0.1", None)
    assert guard.allows("127.10.0.3", None)
    assert guard.allows("::1", None)
    assert guard.allows("::ffff:127.0.0.1", None)
    assert not guard.allows("203.0.113.9", None)
    assert not guard.allows("::ffff:203.0.113.9", None)
    assert not guard.allows("10.1.2.3", None)
    assert not guard.allows(None, None)
    # Either setting replaces the loopback default: the operator said who may scrape.
    assert MetricsGuard.parse(None, "10.0.0.0/8", production=True).allows("10.1.2.3", None)
    assert not MetricsGuard.parse(None, "10.0.0.0/8", production=True).allows("127.0.0.1", None)
    assert MetricsGuard.parse("tok", None, production=True).allows("203.0.113.9", "Bearer tok")


async def test_metrics_route_serves_prometheus_text_and_refuses_without_token() -> None:
    metrics = Metrics()
    metrics.observe_request("Ping", "read", 0.01, "ok")
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics, MetricsGuard.parse("tok", None)))
    async with TestClient(TestServer(app)) as client:
        refused = await client.get("/metrics")
        assert refused.status == 403
        ok = await client.get("/metrics", headers={"Authorization": "Bearer tok"})
        assert ok.status == 200
        assert ok.headers["Content-Type"].startswith("text/plain")
        assert (
            'mlc_graphql_request_duration_seconds_bucket{category="read",le="0.5",operation="Ping"} 1.0'
            in (await ok.text())
        )


# --- through the app: the operations feature's middleware and stages ---------------------------------

STUDENTS = "query ClassList { viewer { teacher { students(first: 5) { totalCount } } } }"


@pytest.fixture(scope="module")
async def teacher_auth(pool: asyncpg.Pool) -> dict[str, str]:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    await factories.make_students(pool, org, teacher_id, 3)
    return bearer("teacher", teacher_id, org)


async def test_the_app_exports_request_sql_pool_and_cache_metrics(
    database_url: str, teacher_auth: dict[str, str]
) -> None:
    async with app_client(http_settings(database_url)) as client:
        for _ in range(2):
            ok = await client.post("/graphql", json={"query": STUDENTS}, headers=teacher_auth)
            assert ok.status == 200
        bad = await client.post("/graphql", json={"query": "{ viewer { nope } }"}, headers=teacher_auth)
        assert bad.status == 200
        metrics = client.app[METRICS]
        s = _samples(metrics)
    labels = (("category", "read"), ("operation", "ClassList"))
    assert s[("mlc_graphql_request_duration_seconds_count", labels)] == 2
    assert s[("mlc_graphql_requests_total", (("category", "read"), ("outcome", "ok")))] == 2
    assert s[("mlc_graphql_errors_total", (("code", "GRAPHQL_VALIDATION_FAILED"),))] == 1
    assert s[("mlc_http_responses_total", (("status", "200"),))] == 3
    assert s[("mlc_sql_statements_per_request_count", (("category", "read"),))] == 3  # the refused one ran 0
    assert s[("mlc_sql_statements_per_request_sum", (("category", "read"),))] >= 2
    assert s[("mlc_cache_requests_total", (("cache", "document"), ("result", "hit")))] == 1
    assert s[("mlc_cache_requests_total", (("cache", "document"), ("result", "miss")))] == 2
    assert s[("mlc_db_pool_max_connections", (("pool", "primary"),))] == 4
    assert s[("mlc_http_requests_in_flight", ())] == 0


async def test_metrics_route_is_guarded_by_the_configured_token(database_url: str) -> None:
    settings = http_settings(database_url, metrics_token="scrape-me")
    async with app_client(settings) as client:
        assert (await client.get("/metrics")).status == 403
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert allowed.status == 200
        assert "mlc_db_pool_connections" in await allowed.text()


def test_categories_follow_the_operation() -> None:
    def category(text: str) -> str:
        operation = parse(text).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        return category_of(operation)

    assert category("{ viewer { role } }") == "read"
    assert category("{ classProgress(teacherId: 1) { students { averageScore } } }") == "report"
    assert category("mutation { endSession }") == "write"
    assert category("subscription { leaderboardUpdated(gameId: 1) { scope } }") == "realtime"


@pytest.mark.slow
async def test_with_workers_any_scrape_reports_every_workers_counts(
    database_url: str, teacher_auth: dict[str, str]
) -> None:
    port = free_port()
    process = start_server(database_url, port, "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(port, process, workers=2)
        pids: set[int] = set()
        # New connections each time, so the kernel spreads them over both workers' sockets.
        for _ in range(20):
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"{base}/graphql", json={"query": STUDENTS}, headers=teacher_auth
                ) as r:
                    assert r.status == 200
                async with session.get(f"{base}/healthz") as r:
                    pids.add((await r.json())["pid"])
        seen: list[float] = []
        scraped_by: set[str] = set()
        for _ in range(10):
            async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as r:
                text = await r.text()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "mlc_graphql_requests_total" and sample.labels["outcome"] == "ok":
                        seen.append(sample.value)
                    if sample.name == "mlc_db_pool_max_connections":
                        scraped_by.add(sample.labels["pid"])
    finally:
        code, output = stop_server(process)
    assert code == 0, output
    assert len(pids) == 2, "both workers served"
    assert seen and all(value == 20 for value in seen), (seen, output[-2000:])
    assert scraped_by <= {str(pid) for pid in pids}


async def test_websocket_connections_and_subscriptions_are_gauged(
    database_url: str, pool: asyncpg.Pool
) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    [student] = await factories.make_students(pool, org, teacher_id, 1)
    _, _, [game] = await factories.make_catalogue(pool, games=1)
    token = bearer("student", student, org)["Authorization"].split()[1]
    subscription = (
        "subscription Live($g: ID!) { leaderboardUpdated(gameId: $g, scope: CLASS) { entries { rank } } }"
    )
    app = create_app(http_settings(database_url))
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/graphql", protocols=("graphql-transport-ws",))
        await ws.send_json({"type": "connection_init", "payload": {"token": token}})
        assert (await ws.receive_json())["type"] == "connection_ack"
        variables = {"g": encode_global_id("Game", game)}
        await ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": subscription, "variables": variables}}
        )
        assert (await ws.receive_json())["type"] == "next"
        s = _samples(app[METRICS])
        assert s[("mlc_websocket_connections", ())] == 1
        assert s[("mlc_subscriptions_active", ())] == 1
        assert s[("mlc_http_requests_in_flight", ())] == 0
        await ws.close()
        for _ in range(50):
            if _samples(app[METRICS])[("mlc_websocket_connections", ())] == 0:
                break
            await asyncio.sleep(0.02)
        assert _samples(app[METRICS])[("mlc_websocket_connections", ())] == 0
