"""The rows a Redis leaderboard is rebuilt from: every best challenge score of one board, from PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loaders.leaderboards import BoardKey
from mlc_graph.platform.db import Executor


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class LiveEntry:
    """One line of a live board as Redis holds it (no names: they are loaded for the viewer's org)."""

    rank: int
    student_id: int
    org_id: int
    teacher_id: int
    score: int
    achieved_at: datetime


@dataclass(frozen=True, slots=True)
class LiveBoard:
    entries: list[LiveEntry]
    viewer: LiveEntry | None
    size: int
    rebuilt: bool = False


_BOARD = "SELECT student_id, org_id, teacher_id, score, achieved_at FROM best_scores WHERE game_id = $1"
SELECT_BOARD_GLOBAL = _BOARD
SELECT_BOARD_ORGANIZATION = _BOARD + " AND org_id = $2"
SELECT_BOARD_CLASS = _BOARD + " AND teacher_id = $2"
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


async def fetch_board_rows(db: Executor, board: BoardKey) -> list[BoardRow]:
    """Every best score on `board`, unordered: Redis does the ranking."""
    if board.scope == "GLOBAL":
        rows = await db.fetch(SELECT_BOARD_GLOBAL, board.game_id)
    else:
        rows = await db.fetch(_BY_SCOPE[board.scope], board.game_id, board.scope_id)
    return [BoardRow(**r) for r in rows]
