"""What resolvers may ask of the server's real-time services, as protocols.

The services themselves (live boards in Redis, board fan-out, quotas and sessions) live above this layer
in `mlc_graph`; the app factory hands the concrete ones to every Context. Resolvers see only these
shapes, so the GraphQL layer imports nothing of the server (the layer contracts in pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from loaders.leaderboards import BoardKey
from loaders.live_boards import LiveBoard
from mlc_graph.domain.quotas import Quota
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.db import Executor


class QuotaUsage(Protocol):
    """One quota decision, as `viewer.rateLimit` reports it."""

    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def reset_at(self) -> int: ...
    @property
    def cost(self) -> int: ...
    @property
    def cost_limit(self) -> int: ...
    @property
    def cost_remaining(self) -> int: ...
    @property
    def cost_used(self) -> int: ...
    @property
    def now(self) -> int: ...
    @property
    def shared(self) -> bool: ...
    def quotas(self) -> tuple[Quota, Quota]: ...
    def tightest(self) -> Quota: ...


class Quotas(Protocol):
    async def usage(self, principal: Principal) -> QuotaUsage:
        """The caller's usage this hour, without counting a request."""
        ...


class Sessions(Protocol):
    async def end(self, org_id: int, session_id: str) -> bool: ...
    async def active(self, org_id: int) -> int: ...


class LiveBoards(Protocol):
    async def read(self, db: Executor, board: BoardKey, first: int, student_id: int | None) -> LiveBoard:
        """The board from Redis (raises RedisUnavailable: the caller then reads PostgreSQL)."""
        ...


class BoardListener(Protocol):
    async def wait(self) -> None: ...
    def close(self) -> None: ...


class BoardUpdates(Protocol):
    def listen(self, board: BoardKey) -> BoardListener: ...


@dataclass(frozen=True, slots=True)
class Services:
    """The real-time services of this process; all None when the server runs without them (tests)."""

    boards: LiveBoards | None = None
    updates: BoardUpdates | None = None
    quotas: Quotas | None = None
    sessions: Sessions | None = None
