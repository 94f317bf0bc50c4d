"""Leaderboards from PostgreSQL: the source of truth (and the rebuild source for the Redis boards)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mlc_graph.platform.db import Executor

# Ranking order everywhere: higher score first, then who reached it first, then student id.
_TOP = """
SELECT b.student_id, b.org_id, b.teacher_id, b.score, b.achieved_at, s.first_name, s.last_name
FROM best_scores b JOIN students s ON s.id = b.student_id
WHERE b.game_id = $1 {scope}
ORDER BY b.score DESC, b.achieved_at, b.student_id
LIMIT $2
"""
SELECT_TOP_GLOBAL = _TOP.format(scope="")
SELECT_TOP_ORGANIZATION = _TOP.format(scope="AND b.org_id = $3")
SELECT_TOP_CLASS = _TOP.format(scope="AND b.teacher_id = $3")

# The rank of the best_scores row `b` on its board: one plus the entries ahead of it in that order
# ({scope} narrows the board; empty for GLOBAL). Also composed by loaders/score_writes.py.
RANK_OF_TEMPLATE = """1 + (SELECT count(*) FROM best_scores o
            WHERE o.game_id = b.game_id {scope}
              AND (o.score > b.score
                   OR (o.score = b.score AND (o.achieved_at, o.student_id) < (b.achieved_at, b.student_id)))
       )"""
_RANK = """
SELECT b.student_id, b.org_id, b.teacher_id, b.score, b.achieved_at, s.first_name, s.last_name,
       {rank} AS rank
FROM best_scores b JOIN students s ON s.id = b.student_id
WHERE b.game_id = $1 AND b.student_id = $2
"""
SELECT_RANK_GLOBAL = _RANK.format(rank=RANK_OF_TEMPLATE.format(scope=""))
SELECT_RANK_ORGANIZATION = _RANK.format(rank=RANK_OF_TEMPLATE.format(scope="AND o.org_id = b.org_id"))
SELECT_RANK_CLASS = _RANK.format(rank=RANK_OF_TEMPLATE.format(scope="AND o.teacher_id = b.teacher_id"))

SCOPES = ("GLOBAL", "ORGANIZATION", "CLASS")
_TOP_BY_SCOPE = {
    "GLOBAL": SELECT_TOP_GLOBAL,
    "ORGANIZATION": SELECT_TOP_ORGANIZATION,
    "CLASS": SELECT_TOP_CLASS,
}
_RANK_BY_SCOPE = {
    "GLOBAL": SELECT_RANK_GLOBAL,
    "ORGANIZATION": SELECT_RANK_ORGANIZATION,
    "CLASS": SELECT_RANK_CLASS,
}


@dataclass(frozen=True, slots=True)
class BoardKey:
    """One board: a game in a scope; scope_id is the org id (ORGANIZATION) or teacher id (CLASS)."""

    game_id: int
    scope: str
    scope_id: int | None


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class RankedRow:
    rank: int
    student_id: int
    org_id: int
    teacher_id: int
    score: int
    achieved_at: datetime
    first_name: str
    last_name: str


async def fetch_top(db: Executor, board: BoardKey, first: int) -> list[RankedRow]:
    params: list[object] = [board.game_id, first]
    if board.scope != "GLOBAL":
        params.append(board.scope_id)
    rows = await db.fetch(_TOP_BY_SCOPE[board.scope], *params)
    # Positional (twice as fast as keywords for frozen dataclasses): the SELECT lists the fields after rank.
    return [RankedRow(i, *r) for i, r in enumerate(rows, start=1)]


async def fetch_rank(db: Executor, board: BoardKey, student_id: int) -> RankedRow | None:
    """The student's own entry on the board, or None when they have no challenge score there."""
    row = await db.fetchrow(_RANK_BY_SCOPE[board.scope], board.game_id, student_id)
    return None if row is None else RankedRow(**row)


async def fetch_tops(db: Executor, keys: Sequence[tuple[BoardKey, int]]) -> list[list[RankedRow]]:
    return [await fetch_top(db, board, first) for board, first in keys]
