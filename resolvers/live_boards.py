"""Leaderboard lines from the live Redis board, as the same RankedRow the PostgreSQL path returns.

Redis holds ranks, scores, times and the students' names (mlc_graph.realtime.live_boards), so a board
read runs no statement for them. A line written before lines carried names has its names loaded (one
batched statement), and only for students of the viewer's organization: everyone else is shown under a
pseudonym anyway. Without Redis, or while it is unavailable, the lines come from PostgreSQL.
"""

from __future__ import annotations

from loaders.leaderboards import BoardKey, RankedRow, fetch_rank, fetch_top
from loaders.live_boards import LiveEntry
from mlc_graph.platform.redis import RedisUnavailable
from resolvers.info import Info


async def read_board(
    info: Info, board: BoardKey, first: int, student_id: int | None
) -> tuple[list[RankedRow], RankedRow | None]:
    """Top `first` lines of `board`, and `student_id`'s own line (None when not given or not ranked)."""
    context = info.context
    boards = context.services.boards
    if boards is not None:
        try:
            live = await boards.read(context.db, board, first, student_id)
        except RedisUnavailable:
            pass
        else:
            lines = [*live.entries, *([live.viewer] if live.viewer is not None else [])]
            rows = await _with_names(info, lines)
            entries = rows[: len(live.entries)]
            return entries, (rows[-1] if live.viewer is not None else None)
    entries = await fetch_top(context.db, board, first)
    mine = None
    if student_id is not None:
        mine = next((e for e in entries if e.student_id == student_id), None)
        if mine is None:
            mine = await fetch_rank(context.db, board, student_id)
    return entries, mine


async def _with_names(info: Info, lines: list[LiveEntry]) -> list[RankedRow]:
    """The lines as ranked rows. Names come with the line; only a line written before lines carried them
    (and visible to the viewer: others show a pseudonym) costs a load from PostgreSQL."""
    viewer = info.context.viewer
    missing = sorted({e.student_id for e in lines if e.first_name is None and viewer.can_see_org(e.org_id)})
    names: dict[int, tuple[str, str]] = {}
    if missing:
        students = await info.context.loaders.students_by_id.load_many(missing)
        names = {s.id: (s.first_name, s.last_name) for s in students if s is not None}
    rows = []
    for e in lines:
        if e.first_name is not None and e.last_name is not None:
            first, last = e.first_name, e.last_name
        else:
            first, last = names.get(e.student_id, ("", ""))
        rows.append(
            RankedRow(e.rank, e.student_id, e.org_id, e.teacher_id, e.score, e.achieved_at, first, last)
        )
    return rows
