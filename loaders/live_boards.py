"""The rows a Redis leaderboard is rebuilt from: every best challenge score of one board, from PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loaders.leaderboards import BoardKey
from mlc_graph.platform.db import Executor


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class LiveEntry:
    """One line of a live board as Redis holds it, with the student's names when the line carries them
    (lines written before names were kept do not: the reader loads those from PostgreSQL)."""

    rank: int
    student_id: int
    org_id: int
    teacher_id: int
    score: int
    achieved_at: datetime
    first_name: str | None = None
    last_name: str | None = None


@dataclass(frozen=True, slots=True)
class LiveBoard:
    entries: list[LiveEntry]
    viewer: LiveEntry | None
    size: int
    rebuilt: bool = False


_BOARD = (
    "SELECT b.student_id, b.org_id, b.teacher_id, b.score, b.achieved_at, s.first_name, s.last_name "
    "FROM best_scores b JOIN students s ON s.id = b.student_id WHERE b.game_id = $1"
)
SELECT_BOARD_GLOBAL = _BOARD
SELECT_BOARD_ORGANIZATION = _BOARD + " AND b.org_id = $2"
SELECT_BOARD_CLASS = _BOARD + " AND b.teacher_id = $2"
_BY_SCOPE = {
    "GLOBAL": SELECT_BOARD_GLOBAL,
    "ORGANIZATION": SELECT_BOARD_ORGANIZATION,
    "CLASS": SELECT_BOARD_CLASS,
}


@dataclass(frozen=True, slots=True)
class BoardRow:
    student_id: int
    org_id: int
    teacher_id: int
    score: int
    achieved_at: datetime
    first_name: str | None = None
    last_name: str | None = None


async def fetch_board_rows(db: Executor, board: BoardKey) -> list[BoardRow]:
    """Every best score on `board`, unordered: Redis does the ranking."""
    if board.scope == "GLOBAL":
        rows = await db.fetch(SELECT_BOARD_GLOBAL, board.game_id)
    else:
        rows = await db.fetch(_BY_SCOPE[board.scope], board.game_id, board.scope_id)
    return [BoardRow(**r) for r in rows]
