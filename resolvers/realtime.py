"""Real time in the schema: `leaderboardUpdated`, `viewer.rateLimit` and the `endSession` mutation."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator

import strawberry

from mlc_graph.domain.quotas import Quota
from mlc_graph.platform.errors import ServiceUnavailableError
from resolvers.enums import LeaderboardScope, RateLimitQuotaName
from resolvers.info import Info
from resolvers.leaderboards import Leaderboard, open_board
from resolvers.live_boards import read_board
from resolvers.services import QuotaUsage


@strawberry.type(description="One hourly quota: requests, or cost points (the RateLimit header's policies).")
class RateLimitQuota:
    name: RateLimitQuotaName = strawberry.field(description="The policy id in the RateLimit headers.")
    unit: str = strawberry.field(description="`requests` or `cost-points` (the header's `qu`).")
    limit: int = strawberry.field(description="Allowed in the sliding hour by the organization's tier.")
    used: int = strawberry.field(description="Counted in the sliding hour, this request included.")
    remaining: int = strawberry.field(description="Left in the sliding hour.")
    window_seconds: int = strawberry.field(description="Length of the sliding window.")
    reset_at: dt.datetime = strawberry.field(description="When the oldest counted minute leaves the window.")

    @classmethod
    def of(cls, quota: Quota, now: int) -> RateLimitQuota:
        return cls(
            name=RateLimitQuotaName(quota.name),
            unit=quota.unit,
            limit=quota.limit,
            used=quota.used,
            remaining=quota.remaining,
            window_seconds=quota.window,
            reset_at=dt.datetime.fromtimestamp(now + quota.reset_in, dt.UTC),
        )


@strawberry.type(description="The viewer's API quota for the current hour (like GitHub's rateLimit).")
class RateLimit:
    limit: int = strawberry.field(description="Requests allowed per hour by the organization's tier.")
    remaining: int = strawberry.field(description="Requests left in the sliding hour.")
    used: int = strawberry.field(description="Requests counted in the sliding hour, this one included.")
    reset_at: dt.datetime = strawberry.field(description="When the oldest counted minute leaves the window.")
    cost: int = strawberry.field(description="Cost points this request was charged.")
    cost_limit: int = strawberry.field(description="Cost points allowed per hour.")
    cost_remaining: int = strawberry.field(description="Cost points left in the sliding hour.")
    cost_used: int = strawberry.field(
        description="Cost points counted in the sliding hour, this request's included."
    )
    quotas: list[RateLimitQuota] = strawberry.field(
        description="Both quotas, requests then cost points; a request needs room in each."
    )
    limited_by: RateLimitQuotaName = strawberry.field(
        description="The quota with the smallest share left (the one that refused, after a refusal): "
        "what the RateLimit-Limit, -Remaining and -Reset headers show."
    )
    shared: bool = strawberry.field(
        description="False while Redis is unavailable and this instance counts on its own."
    )

    @classmethod
    def of(cls, result: QuotaUsage) -> RateLimit:
        return cls(
            limit=result.limit,
            remaining=result.remaining,
            used=result.used,
            reset_at=dt.datetime.fromtimestamp(result.reset_at, dt.UTC),
            cost=result.cost,
            cost_limit=result.cost_limit,
            cost_remaining=result.cost_remaining,
            cost_used=result.cost_used,
            quotas=[RateLimitQuota.of(q, result.now) for q in result.quotas()],
            limited_by=RateLimitQuotaName(result.tightest().name),
            shared=result.shared,
        )


def _unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError("Real-time services are not enabled on this server")


async def resolve_rate_limit(info: Info) -> RateLimit | None:
    """This request's decision, or the current usage when the quota stage did not run (WebSocket)."""
    viewer = info.context.viewer
    if info.context.rate_limit is not None:
        return RateLimit.of(info.context.rate_limit)
    quotas = info.context.services.quotas
    return None if quotas is None else RateLimit.of(await quotas.usage(viewer))


@strawberry.type
class EndSessionPayload:
    ended: bool = strawberry.field(description="True when the session was active and is now ended.")
    active_sessions: int = strawberry.field(description="Active sessions left in the organization.")


async def resolve_end_session(info: Info) -> EndSessionPayload:
    viewer = info.context.viewer
    sessions = info.context.services.sessions
    if sessions is None:
        raise _unavailable()
    ended = await sessions.end(viewer.org_id, viewer.session_id)
    return EndSessionPayload(ended=ended, active_sessions=await sessions.active(viewer.org_id))


async def resolve_leaderboard_updated(
    info: Info,
    game_id: strawberry.ID,
    scope: LeaderboardScope = LeaderboardScope.CLASS,
    first: int = 10,
) -> AsyncGenerator[Leaderboard, None]:
    updates = info.context.services.updates
    if updates is None:
        raise _unavailable()
    game, board, me = await open_board(info, game_id, scope, first)

    async def snapshot() -> Leaderboard:
        entries, mine = await read_board(info, board, first, me)
        return Leaderboard(
            game=game,  # type: ignore[arg-type]
            scope=scope,
            entries=entries,  # type: ignore[arg-type]
            viewer_entry=mine,  # type: ignore[arg-type]
        )

    listener = updates.listen(board)
    try:
        yield await snapshot()
        while True:
            await listener.wait()
            # A fresh read per update: cached loader values would hide renamed students.
            info.context.loaders.clear_all()
            yield await snapshot()
    finally:
        listener.close()


@strawberry.type
class RealtimeMutation:
    end_session: EndSessionPayload = strawberry.mutation(
        resolver=resolve_end_session,
        description="End the caller's session now: its place under the tier's cap is free at once, "
        "and its token is refused from now on (sign in again for a new session).",
    )


@strawberry.type
class Subscription:
    leaderboard_updated: AsyncGenerator[Leaderboard, None] = strawberry.subscription(
        resolver=resolve_leaderboard_updated,
        description="The leaderboard now, then again whenever it changes (at most a few times a second).",
    )
