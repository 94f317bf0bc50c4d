"""Scores: each student's history as keyset pages (newest first), and best challenge scores."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from loaders.base import by_id
from loaders.pagination import (
    EMPTY_PAGE,
    Page,
    PageArgs,
    counts_in_key_order,
    group_by_args,
    pages_by_parent,
    parents_by_filter,
)
from mlc_graph.platform.db import Executor

_COLUMNS = "id, org_id, student_id, game_id, score, stage, created_at"

_PAGE = f"""
SELECT s.* FROM unnest($1::bigint[]) AS p(student_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM scores
    WHERE student_id = p.student_id {{game}} {{after}}
    ORDER BY created_at DESC, id DESC
    LIMIT $2
) s
"""  # noqa: S608
SELECT_SCORE_PAGES = _PAGE.format(game="", after="")
SELECT_SCORE_PAGES_AFTER = _PAGE.format(game="", after="AND (created_at, id) < ($3::timestamptz, $4::bigint)")
SELECT_SCORE_PAGES_BY_GAME = _PAGE.format(game="AND game_id = $3::bigint", after="")
SELECT_SCORE_PAGES_BY_GAME_AFTER = _PAGE.format(
    game="AND game_id = $3::bigint", after="AND (created_at, id) < ($4::timestamptz, $5::bigint)"
)
_COUNT = """
SELECT student_id, count(*) AS n FROM scores
WHERE student_id = ANY($1::bigint[]) {game} GROUP BY student_id
"""
COUNT_SCORES_BY_STUDENTS = _COUNT.format(game="")
COUNT_SCORES_BY_STUDENTS_AND_GAME = _COUNT.format(game="AND game_id = $2::bigint")
SELECT_SCORES_BY_IDS = f"SELECT {_COLUMNS} FROM scores WHERE id = ANY($1::bigint[])"  # noqa: S608
SELECT_BEST_SCORES = """
SELECT b.student_id, b.game_id, b.score, b.achieved_at
FROM unnest($1::bigint[], $2::bigint[]) AS k(student_id, game_id)
JOIN best_scores b ON b.student_id = k.student_id AND b.game_id = k.game_id
"""


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class ScoreRow:
    id: int
    org_id: int
    student_id: int
    game_id: int
    score: int
    stage: str
    created_at: datetime

    @property
    def keyset(self) -> tuple[datetime, int]:
        return (self.created_at, self.id)


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class BestScoreRow:
    student_id: int
    game_id: int
    score: int
    achieved_at: datetime


async def fetch_score_pages_by_students(
    db: Executor, keys: Sequence[tuple[int, PageArgs]]
) -> list[Page[ScoreRow]]:
    """PageArgs.filter is a game id or None for every game."""
    found: dict[tuple[int, PageArgs], Page[ScoreRow]] = {}
    for args, student_ids in group_by_args(keys).items():
        limit = args.first + 1
        if args.filter is None:
            if args.after is None:
                rows = await db.fetch(SELECT_SCORE_PAGES, student_ids, limit)
            else:
                rows = await db.fetch(SELECT_SCORE_PAGES_AFTER, student_ids, limit, *args.after)
        elif args.after is None:
            rows = await db.fetch(SELECT_SCORE_PAGES_BY_GAME, student_ids, limit, args.filter)
        else:
            rows = await db.fetch(
                SELECT_SCORE_PAGES_BY_GAME_AFTER, student_ids, limit, args.filter, *args.after
            )
        pages = pages_by_parent([ScoreRow(**r) for r in rows], lambda s: s.student_id, args.first)
        for student_id in student_ids:
            found[(student_id, args)] = pages.get(student_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_scores_by_students(db: Executor, keys: Sequence[tuple[int, Hashable]]) -> list[int]:
    """Every score of each (student id, game id or None) key, not just one page."""
    counted: dict[tuple[int, Hashable], int] = {}
    for game_id, student_ids in parents_by_filter(keys).items():
        if game_id is None:
            rows = await db.fetch(COUNT_SCORES_BY_STUDENTS, student_ids)
        else:
            rows = await db.fetch(COUNT_SCORES_BY_STUDENTS_AND_GAME, student_ids, game_id)
        counted.update(((r["student_id"], game_id), r["n"]) for r in rows)
    return counts_in_key_order(keys, counted)


async def fetch_scores_by_ids(db: Executor, ids: Sequence[int]) -> list[ScoreRow | None]:
    rows = await db.fetch(SELECT_SCORES_BY_IDS, list(ids))
    return by_id([ScoreRow(**r) for r in rows], ids)


async def fetch_best_scores(db: Executor, keys: Sequence[tuple[int, int]]) -> list[BestScoreRow | None]:
    """Best challenge score per (student_id, game_id) key; None where the student has none."""
    rows = await db.fetch(SELECT_BEST_SCORES, [k[0] for k in keys], [k[1] for k in keys])
    found = {(r["student_id"], r["game_id"]): BestScoreRow(**r) for r in rows}
    return [found.get(key) for key in keys]
