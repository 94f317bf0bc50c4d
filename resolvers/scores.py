"""Score (one play of a game) and BestScore (a student's best challenge score in a game)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.scores import BestScoreRow, ScoreRow
from resolvers.enums import ScoreStage
from resolvers.info import Info
from resolvers.relay import Node, encode_global_id

if TYPE_CHECKING:
    from resolvers.games import Game


async def resolve_game(
    root: ScoreRow | BestScoreRow, info: Info
) -> Annotated[Game, strawberry.lazy("resolvers.games")] | None:
    return await info.context.loaders.games_by_id.load(root.game_id)  # type: ignore[return-value]


def resolve_score_id(root: ScoreRow) -> strawberry.ID:
    # Scores are partitioned by created_at; the id alone still identifies one row (one sequence).
    return strawberry.ID(encode_global_id("Score", root.id))


@strawberry.type(description="One play of a game.")
class Score(Node):
    id: strawberry.ID = strawberry.field(resolver=resolve_score_id)
    score: int
    stage: ScoreStage
    created_at: dt.datetime
    game: Annotated[Game, strawberry.lazy("resolvers.games")] | None = strawberry.field(resolver=resolve_game)

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, ScoreRow)


@strawberry.type(description="A student's best challenge-stage score in one game.")
class BestScore:
    score: int
    achieved_at: dt.datetime
    game: Annotated[Game, strawberry.lazy("resolvers.games")] | None = strawberry.field(resolver=resolve_game)

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, BestScoreRow)
