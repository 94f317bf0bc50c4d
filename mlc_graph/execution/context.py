"""The typed context every resolver receives (house rule: no dict lookups on info.context)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loaders import Loaders
from mlc_graph.guards.ratelimit import RateLimitResult
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import UnauthenticatedError
from mlc_graph.platform.events import EventBus


@dataclass(slots=True)
class Context:
    settings: Settings
    db: Executor
    loaders: Loaders
    stats: QueryStats
    principal: Principal | None = None
    request_id: str = ""
    operation_name: str | None = None
    # Values for the response's `extensions` gathered while resolving (cost, sql count, ...).
    extensions: dict[str, Any] = field(default_factory=dict)
    # Services that the app factory registered (Redis, leaderboards, rate limiter, pubsub, ...),
    # keyed by name so the GraphQL layer stays free of aiohttp imports.
    services: dict[str, Any] = field(default_factory=dict)
    events: EventBus = field(default_factory=EventBus)
    # Issue 5: this request's rate-limit decision (for viewer.rateLimit), and headers that every
    # response of the request carries, refused or not (RateLimit-*).
    rate_limit: RateLimitResult | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def viewer(self) -> Principal:
        """The authenticated caller; resolvers that need one call this and get UNAUTHENTICATED otherwise."""
        if self.principal is None:
            raise UnauthenticatedError("Authentication required: send 'Authorization: Bearer <token>'")
        return self.principal


def make_context(
    settings: Settings,
    db: Executor,
    principal: Principal | None,
    request_id: str = "",
    services: dict[str, Any] | None = None,
    events: EventBus | None = None,
) -> Context:
    return Context(
        settings=settings,
        db=db,
        loaders=Loaders(db),
        stats=db.stats,
        principal=principal,
        request_id=request_id,
        services=services if services is not None else {},
        events=events if events is not None else EventBus(),
    )
