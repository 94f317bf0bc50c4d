"""The app factory, the composition root: every long-lived object is made here or at start-up, not at import.

What it assembles, in order:
- settings, the token verifier, the event bus;
- the tier resolver, the real-time services (Redis state, live boards, fan-out) and the quotas, and the
  typed `Services` every Context receives (resolvers reach them without importing the server);
- start-up contexts: the database pool, the replica pools (mlc_graph.http.observe), the real-time
  services, then the admission pipeline, which needs the pool and Redis (persisted documents);
- routes: /graphql (HTTP and WebSocket), /healthz, /readyz, /metrics, the web-vitals beacon, GraphiQL.
The order of the admission stages is written in one place, mlc_graph.execution.stages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
from aiohttp import web

from mlc_graph.domain.tiers import TierTable
from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.execution.documents import Documents
from mlc_graph.execution.pipeline import Pipeline
from mlc_graph.execution.stages import Admission, Stage, admission_stages
from mlc_graph.guards import limits, persisted
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.guards.origins import ORIGINS, OriginPolicy
from mlc_graph.guards.quotas import Quotas
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.http import headers, observe, view, web_vitals
from mlc_graph.http.cors import cors_middleware
from mlc_graph.keys import (
    EVENTS,
    PERSISTED,
    PIPELINE,
    POOL,
    QUOTAS,
    REALTIME,
    REQUEST_ID,
    SERVICES,
    SETTINGS,
    TIERS,
    TOKENS,
)
from mlc_graph.platform import partition_upkeep
from mlc_graph.platform.auth import TokenVerifier
from mlc_graph.platform.change_partitions import ensure_change_partitions
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import create_pool
from mlc_graph.platform.events import EventBus
from mlc_graph.platform.migrate import ensure_score_partitions
from mlc_graph.platform.redis import connect
from mlc_graph.realtime.services import Realtime
from mlc_graph.ws import legacy, subscriptions
from resolvers.batch import BATCH_RESOLVERS
from resolvers.schema import schema
from resolvers.services import Services

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, first_stages: Sequence[Stage] = (), tracer: Any = None
) -> web.Application:
    """A fresh application for `settings`; nothing is shared with any other app instance.

    `first_stages` run before the admission list (tests use it to watch every operation); `tracer` is an
    OpenTelemetry tracer to use instead of the one MLC_TRACING=1 makes (tests pass an in-memory one).
    """
    origins = OriginPolicy.of(settings.allowed_origins)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[cors_middleware(origins), view.request_id_middleware],
    )
    app[ORIGINS] = origins
    app[SETTINGS] = settings
    app[TOKENS] = TokenVerifier.for_settings(settings.jwt_secret, settings.identity_provider)
    app[EVENTS] = EventBus()
    tiers = TierResolver(TierTable.from_overrides(settings.tier_overrides), settings.tier_cache_seconds)
    realtime = Realtime.create(settings)
    quotas = Quotas(realtime.redis, tiers, settings.session_idle_seconds)
    app[TIERS] = tiers
    app[REALTIME] = realtime
    app[QUOTAS] = quotas
    app[SERVICES] = Services(
        boards=realtime.boards, updates=realtime.updates, quotas=quotas, sessions=quotas.sessions
    )
    app[EVENTS].on_score(realtime.boards.score_committed)
    if tracer is not None:
        app[observe.TRACER] = tracer
    headers.install(app)
    app.cleanup_ctx.append(_database)
    # Its replica pools start after the primary's; its middleware wraps every handler, the WebSocket one
    # (reached through GET /graphql's) included, so sockets are counted there.
    observe.install(app)
    app.cleanup_ctx.append(_realtime)
    app.cleanup_ctx.append(_pipeline(tuple(first_stages)))
    app.cleanup_ctx.append(partition_upkeep.cleanup_ctx(settings))  # issue 12: partitions ahead, periodically
    view.add_routes(app)
    web_vitals.add_routes(app)
    subscriptions.install(app)
    legacy.install(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    try:
        pool = await create_pool(settings.database_url, settings.pool)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        # Start anyway with a lazy pool: /readyz reports 503 until the database answers, then recovers.
        log.warning("database unreachable at startup (%s); serving, not ready", exc)
        pool = await create_pool(settings.database_url, replace(settings.pool, min_size=0))
    app[POOL] = pool
    app[TIERS].pool = pool
    await _ensure_partitions(settings.direct_url)
    yield
    await pool.close()


async def _realtime(app: web.Application) -> AsyncIterator[None]:
    realtime = app[REALTIME]
    await realtime.start()
    yield
    await realtime.close()


def _pipeline(first_stages: tuple[Stage, ...]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        redis = connect(settings.redis_url, 0.5, decode_responses=False) if settings.redis_url else None
        documents_by_hash = persisted.build(settings, app[POOL], redis)
        await persisted.warm(documents_by_hash, app[POOL])
        app[PERSISTED] = documents_by_hash
        app[PIPELINE] = build_pipeline(app, documents_by_hash, first_stages)
        yield
        if redis is not None:
            await redis.aclose()

    return context


def build_pipeline(
    app: web.Application, documents_by_hash: persisted.PersistedQueries, first_stages: tuple[Stage, ...] = ()
) -> Pipeline:
    settings = app[SETTINGS]
    graphql_schema = schema._schema
    documents = Documents(
        graphql_schema,
        production=settings.production,
        cache_size=settings.document_cache_size,
        max_tokens=settings.max_tokens,
        checks=[limits.document_check(settings)],
    )
    admission = admission_stages(
        documents=documents,
        persisted=documents_by_hash,
        text_limits=limits.TextLimits(
            limits.Limits.from_settings(settings), settings.max_tokens, settings.max_document_chars
        ),
        tiers=app[TIERS],
        analyzer=CostAnalyzer(graphql_schema, cache_size=settings.document_cache_size),
        default_budget=settings.cost_budget,
        quotas=app[QUOTAS],
        db_options=app[observe.DB_OPTIONS],
        router=lambda: app.get(observe.ROUTER),
        allow_anonymous_introspection=not settings.production,
    )
    if first_stages:
        admission = Admission((*first_stages, *admission.stages), admission.finishers)
    compiled = (
        CompiledExecutor.for_schema(
            graphql_schema,
            hide_suggestions=settings.production,
            cache_size=settings.document_cache_size,
            batch_resolvers=BATCH_RESOLVERS,
        )
        if settings.executor == "compiled"
        else None
    )
    return Pipeline(graphql_schema, documents, admission, compiled=compiled, production=settings.production)


async def _ensure_partitions(dsn: str) -> None:
    """The current and next months' score partitions exist before the first write lands."""
    try:
        # Its own short-lived connection: DDL and its locks stay off the pool's connections.
        conn = await asyncpg.connect(dsn, timeout=5.0)
        try:
            created = await ensure_score_partitions(conn)
            created += await ensure_change_partitions(conn)
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        # Another worker may be creating the same partition, or the database is down: `mlc-graph
        # maintain` (cron) is the backstop, so this is worth a warning, not a failed start.
        log.warning("could not ensure score partitions: %s", exc)
        return
    if created:
        log.info("created score partitions: %s", ", ".join(created))


__all__ = ["EVENTS", "PIPELINE", "POOL", "REQUEST_ID", "SERVICES", "SETTINGS", "create_app"]
