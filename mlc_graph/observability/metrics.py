"""Prometheus metrics: one registry per app (no global default registry), and the guarded /metrics handler.

Names and labels are the contract with ops/alerts.yml and docs/OPERATIONS.md; change them together.
Apdex with T = 500 ms comes from the latency buckets (satisfied <= 0.5 s, tolerating <= 2 s), recorded in
ops/alerts.yml as mlc:graphql_apdex:ratio_rate5m:
    (bucket{le="0.5"} + bucket{le="2"}) / 2 / count

Multi-process serving (PROMETHEUS_MULTIPROC_DIR set): values live in shared mmap files, so a scrape of any
worker reports all of them; pool gauges are read per process at scrape time and labelled with the pid.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

# Boundaries chosen for the SLOs and alerts: 0.3 (leaderboards), 0.5 (reads, Apdex T), 1 (writes),
# 2 (Apdex 4T, critical alert), 3 (reports).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
SQL_COUNT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
SQL_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)

CATEGORIES = ("read", "write", "report", "realtime")
# Operation names are chosen by clients: past this many distinct names new ones are counted as "other",
# so a client inventing names cannot blow up the series count.
MAX_OPERATION_LABELS = 200
ANONYMOUS = "anonymous"
OTHER = "other"


@dataclass(slots=True)
class _PoolRef:
    name: str
    pool: asyncpg.Pool


@dataclass(slots=True, eq=False)  # eq=False keeps it hashable: registries key on collectors
class _PoolCollector:
    """Pool size, in-use and idle connections read at scrape time (no hot-path bookkeeping)."""

    pools: list[_PoolRef] = field(default_factory=list)
    pid_label: bool = False

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        labels = ["pool", "pid"] if self.pid_label else ["pool"]
        pid = str(os.getpid())
        conns = GaugeMetricFamily(
            "mlc_db_pool_connections", "Connections of a database pool by state", labels=[*labels, "state"]
        )
        limit = GaugeMetricFamily("mlc_db_pool_max_connections", "Configured pool maximum", labels=labels)
        for ref in self.pools:
            base = [ref.name, pid] if self.pid_label else [ref.name]
            size = ref.pool.get_size()
            idle = ref.pool.get_idle_size()
            conns.add_metric([*base, "open"], size)
            conns.add_metric([*base, "idle"], idle)
            conns.add_metric([*base, "in_use"], size - idle)
            limit.add_metric(base, ref.pool.get_max_size())
        yield conns
        yield limit


@dataclass(slots=True, eq=False)
class _CallbackCollector:
    """Counters owned by other modules (caches, rate limiter) exposed by asking them at scrape time."""

    sources: list[Callable[[], Iterable[Metric]]] = field(default_factory=list)

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


class Metrics:
    """Every metric the server exports, registered on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "mlc_graphql_request_duration_seconds",
            "GraphQL request latency by operation name and category",
            ["operation", "category"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "mlc_graphql_requests",
            "GraphQL requests by category and outcome (ok, rejected = client errors, error = server errors)",
            ["category", "outcome"],
            registry=r,
        )
        self.graphql_errors = Counter(
            "mlc_graphql_errors", "GraphQL errors by extensions.code", ["code"], registry=r
        )
        self.http_responses = Counter(
            "mlc_http_responses", "HTTP responses by status code", ["status"], registry=r
        )
        self.sql_statements = Histogram(
            "mlc_sql_statements_per_request",
            "SQL statements one request ran",
            ["category"],
            buckets=SQL_COUNT_BUCKETS,
            registry=r,
        )
        self.sql_seconds = Histogram(
            "mlc_sql_seconds_per_request",
            "Time one request spent waiting on SQL",
            ["category"],
            buckets=SQL_SECONDS_BUCKETS,
            registry=r,
        )
        self.slow_queries = Counter(
            "mlc_sql_slow_queries", "SQL statements slower than MLC_SLOW_QUERY_MS", ["operation"], registry=r
        )
        self.db_unavailable = Counter(
            "mlc_db_unavailable", "Requests refused because no connection could be had", ["pool"], registry=r
        )
        self.cache_requests = Counter(
            "mlc_cache_requests",
            "Cache lookups by cache and result (hit or miss)",
            ["cache", "result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "mlc_rate_limit_refusals", "Requests refused by a quota", ["reason"], registry=r
        )
        self.websocket_connections = Gauge(
            "mlc_websocket_connections",
            "Open WebSocket connections",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.subscriptions = Gauge(
            "mlc_subscriptions_active",
            "Active GraphQL subscriptions",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inflight = Gauge(
            "mlc_http_requests_in_flight", "Requests being handled", registry=r, multiprocess_mode="livesum"
        )
        self.replica_lag_bytes = Gauge(
            "mlc_db_replica_lag_bytes",
            "WAL bytes the replica has still to replay",
            ["replica"],
            registry=r,
            multiprocess_mode="max",
        )
        self.replica_lag_seconds = Gauge(
            "mlc_db_replica_lag_seconds",
            "Seconds since the last transaction the replica replayed (0 when caught up)",
            ["replica"],
            registry=r,
            multiprocess_mode="max",
        )
        self.replica_up = Gauge(
            "mlc_db_replica_up",
            "1 when the replica answered its last probe",
            ["replica"],
            registry=r,
            multiprocess_mode="min",
        )
        self.db_routing = Counter(
            "mlc_db_routed_requests",
            "Where requests ran: primary or replica, and why",
            ["target", "reason"],
            registry=r,
        )
        self._pools = _PoolCollector(pid_label=self.multiprocess)
        self._callbacks = _CallbackCollector()
        r.register(self._pools)
        r.register(self._callbacks)
        self._syncs: list[Callable[[], None]] = []
        self._operations: set[str] = set()
        # Labelled children looked up once: `.labels()` costs a lock and a tuple per call on the hot path.
        self._latency_children: dict[tuple[str, str], Histogram] = {}
        self._per_category: dict[tuple[str, str], tuple[Counter, Histogram, Histogram]] = {}
        self._statuses: dict[int, Counter] = {}

    def add_pool(self, name: str, pool: asyncpg.Pool) -> None:
        self._pools.pools.append(_PoolRef(name, pool))

    def add_sync(self, sync: Callable[[], None]) -> None:
        """Run `sync` before each scrape: it brings real counters up to date from another module's tallies
        (kept as plain ints on the hot path), so they merge across worker processes like any counter."""
        self._syncs.append(sync)

    def add_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Expose metrics another module keeps itself, e.g. the rate limiter's counters."""
        self._callbacks.sources.append(source)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def operation_label(self, operation: str | None) -> str:
        if not operation:
            return ANONYMOUS
        if operation in self._operations:
            return operation
        if len(self._operations) >= MAX_OPERATION_LABELS or len(operation) > 100:
            return OTHER
        self._operations.add(operation)
        return operation

    def observe_request(
        self,
        operation: str | None,
        category: str,
        seconds: float,
        outcome: str,
        error_codes: Sequence[str] = (),
        sql_statements: int = 0,
        sql_seconds: float = 0.0,
    ) -> None:
        """Record one finished GraphQL request (the view calls this once per operation)."""
        key = (self.operation_label(operation), category)
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency_children[key] = self.request_seconds.labels(*key)
        child.observe(seconds)
        children = self._per_category.get((category, outcome))
        if children is None:
            children = self._per_category[(category, outcome)] = (
                self.requests.labels(category, outcome),
                self.sql_statements.labels(category),
                self.sql_seconds.labels(category),
            )
        requests, statements, sql_time = children
        requests.inc()
        statements.observe(sql_statements)
        sql_time.observe(sql_seconds)
        for code in error_codes:
            self.graphql_errors.labels(code).inc()

    def count_response(self, status: int) -> None:
        child = self._statuses.get(status)
        if child is None:
            child = self._statuses[status] = self.http_responses.labels(str(status))
        child.inc()

    def render(self) -> bytes:
        for sync in self._syncs:
            sync()
        if self.multiprocess:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            merged.register(self._pools)
            merged.register(self._callbacks)
            return generate_latest(merged)
        return generate_latest(self.registry)


# Where a production server without MLC_METRICS_TOKEN or MLC_METRICS_ALLOW lets scrapers in: only this
# host (a sidecar or node agent). Metrics name operations and error rates: not for the open internet.
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True, slots=True)
class MetricsGuard:
    """Who may scrape: a bearer token, a list of networks, both; with neither, anyone in development and
    loopback only in production."""

    token: str | None = None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, token: str | None, allow: str | None, production: bool = False) -> MetricsGuard:
        nets = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in (allow or "").split(",") if n.strip()
        )
        if production and not token and not nets:
            nets = LOOPBACK_NETWORKS
        return cls(token or None, nets)

    def allows(self, remote: str | None, authorization: str | None) -> bool:
        if self.networks:
            try:
                address = ipaddress.ip_address(remote or "")
            except ValueError:
                return False
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; match them as IPv4.
                address = address.ipv4_mapped
            if not any(address in net for net in self.networks):
                return False
        if self.token is not None:
            scheme, _, value = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), self.token):
                return False
        return True


def metrics_handler(
    metrics: Metrics, guard: MetricsGuard
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The GET /metrics route: Prometheus text format, or 403 when the guard refuses the scraper."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not guard.allows(request.remote, request.headers.get("Authorization")):
            return web.Response(status=403, text="forbidden\n")
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


@contextmanager
def multiprocess_directory() -> Iterator[None]:
    """For `serve --workers N`: a shared directory where every worker keeps its metric values, so a scrape
    answered by any worker reports the sum of all (prometheus-client's multiprocess mode). Set before the
    workers start; removed when they have stopped. A directory the operator set is used and kept."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    directory = tempfile.mkdtemp(prefix="mlc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def worker_exited(pid: int | None) -> None:
    """Drop a dead worker's live gauges (in-flight, WebSockets) so they stop counting toward the sum."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
