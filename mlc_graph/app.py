"""The app factory: every long-lived object (pool, pipeline, event bus, services) is made here, not at import.

Where other parts plug in: `FEATURES` below. A feature is a function `install(app)` called by
`create_app` after the core keys are set and before the app is frozen. It may
- add a `cleanup_ctx` entry that opens and closes a resource (Redis, pub/sub) and puts it in
  `app[SERVICES]`; that same dict is handed to every request's `Context.services`, so resolvers reach
  services by name without importing aiohttp;
- add pipeline stages or validation rules on `app[PIPELINE]` (cost, limits, persisted queries, rate
  limits: see mlc_graph.execution.pipeline);
- add routes (`/metrics`, WebSocket subscriptions) and middlewares (`app.middlewares.append`);
- subscribe to `app[EVENTS]` (leaderboards, subscription fan-out).
Features run in order; tests pass their own list to `create_app(settings, features=[...])`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

import asyncpg
from aiohttp import web

from mlc_graph.execution.pipeline import Pipeline
from mlc_graph.guards import limits, persisted
from mlc_graph.guards.cost import stage as cost_stage
from mlc_graph.guards.origins import ORIGINS, OriginPolicy
from mlc_graph.http import headers, view, web_vitals
from mlc_graph.http.cors import cors_middleware
from mlc_graph.keys import EVENTS, PIPELINE, POOL, REQUEST_ID, SERVICES, SETTINGS, TOKENS
from mlc_graph.observability import observe
from mlc_graph.platform.auth import TokenVerifier
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import create_pool
from mlc_graph.platform.events import EventBus
from mlc_graph.platform.migrate import ensure_score_partitions
from mlc_graph.ws import subscriptions
from resolvers.schema import schema

log = logging.getLogger(__name__)

Feature = Callable[[web.Application], None]


# Other parts of the server register their install function here (one line each).
# observe first: its middleware must wrap the others' (WebSocket connections are counted there).
FEATURES: tuple[Feature, ...] = (
    observe.install,
    # Issue 3: persisted queries fill in the document, limits refuse abusive text, cost prices the rest;
    # before the quotas, so a refused operation is not charged and the quota reads the known price.
    persisted.install,
    limits.install,
    cost_stage.install,
    subscriptions.install,
)


def create_app(settings: Settings, features: Sequence[Feature] | None = None) -> web.Application:
    """A fresh application for `settings`; nothing is shared with any other app instance."""
    origins = OriginPolicy.of(settings.allowed_origins)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[cors_middleware(origins), view.request_id_middleware],
    )
    app[ORIGINS] = origins
    app[SETTINGS] = settings
    app[TOKENS] = TokenVerifier(settings.jwt_secret)
    app[EVENTS] = EventBus()
    app[SERVICES] = {}
    app[PIPELINE] = Pipeline(
        schema._schema,
        production=settings.production,
        cache_size=settings.document_cache_size,
        max_tokens=settings.max_tokens,
        allow_anonymous_introspection=not settings.production,
        executor=settings.executor,
    )
    headers.install(app)
    app.cleanup_ctx.append(_database)
    view.add_routes(app)
    web_vitals.add_routes(app)
    for install in FEATURES if features is None else features:
        install(app)
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
    await _ensure_partitions(settings.database_url)
    yield
    await pool.close()


async def _ensure_partitions(dsn: str) -> None:
    """Issue 6: the current and next months' score partitions exist before the first write lands."""
    try:
        # Its own short-lived connection: DDL and its locks stay off the pool's connections.
        conn = await asyncpg.connect(dsn, timeout=5.0)
        try:
            created = await ensure_score_partitions(conn)
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        # Another worker may be creating the same partition, or the database is down: `mlc-graph
        # maintain` (cron) is the backstop, so this is worth a warning, not a failed start.
        log.warning("could not ensure score partitions: %s", exc)
        return
    if created:
        log.info("created score partitions: %s", ", ".join(created))


__all__ = [
    "EVENTS",
    "FEATURES",
    "PIPELINE",
    "POOL",
    "REQUEST_ID",
    "SERVICES",
    "SETTINGS",
    "Feature",
    "create_app",
]
