"""The typed context every resolver receives (house rule: no dict lookups on info.context)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from loaders import Loaders
from mlc_graph.domain.tiers import Tier
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import UnauthenticatedError
from mlc_graph.platform.events import EventBus
from resolvers.services import QuotaUsage, Services


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
    # The real-time services the app factory made (live boards, fan-out, quotas, sessions), typed by the
    # protocols resolvers need, so the GraphQL layer imports nothing of the server above it.
    services: Services = field(default_factory=Services)
    events: EventBus = field(default_factory=EventBus)
    # Issue 5: this request's rate-limit decision (for viewer.rateLimit), and headers that every
    # response of the request carries, refused or not (RateLimit-*).
    rate_limit: QuotaUsage | None = None
    # The organization's subscription tier, resolved once per operation by the admission pipeline's tier
    # stage (None for anonymous introspection); budgets, quotas, sessions and caps all read this one.
    tier: Tier | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    def isolated(self) -> Context:
        """This context with its own DataLoaders and statement count (same pool, options and SQL tags)."""
        db = copy.copy(self.db)
        db.stats = QueryStats(keep_texts=self.stats.keep_texts)
        return dataclasses.replace(self, db=db, loaders=Loaders(db), stats=db.stats)

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
    services: Services | None = None,
    events: EventBus | None = None,
) -> Context:
    return Context(
        settings=settings,
        db=db,
        loaders=Loaders(db),
        stats=db.stats,
        principal=principal,
        request_id=request_id,
        services=services if services is not None else Services(),
        events=events if events is not None else EventBus(),
    )
