"""In-process event bus between the write path and real-time consumers (leaderboards, subscriptions).

The write path publishes after its transaction commits; consumers registered by the app factory (the
Redis leaderboard, the pub/sub fan-out) receive the event. A failing consumer is logged, never raised
into the mutation: the database commit is the source of truth and boards can be rebuilt from it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScoreCommitted:
    """A challenge or practice score is durable; `best` is the student's best challenge score now."""

    score_id: int
    game_id: int
    student_id: int
    org_id: int
    teacher_id: int
    score: int
    stage: str
    best: int | None
    best_achieved_at: datetime | None
    # The student's names, when the writer has them: the Redis boards keep them with the line, so a board
    # read needs no statement for them (mlc_graph.realtime.live_boards).
    first_name: str | None = None
    last_name: str | None = None


ScoreListener = Callable[[ScoreCommitted], Awaitable[None]]


@dataclass(slots=True)
class EventBus:
    score_listeners: list[ScoreListener] = field(default_factory=list)

    def on_score(self, listener: ScoreListener) -> None:
        self.score_listeners.append(listener)

    async def score_committed(self, event: ScoreCommitted) -> None:
        for listener in self.score_listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("score listener failed", extra={"game_id": event.game_id})
