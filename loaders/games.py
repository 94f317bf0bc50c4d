"""The shared game catalogue: games, categories and levels; the live library as keyset pages."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loaders.base import by_id, check_columns
from loaders.pagination import EMPTY_PAGE, Page, PageArgs, group_by_args, pages_by_parent
from mlc_graph.platform.db import Executor

_COLUMNS = (
    "id, title, description, category_id, level_id, difficulty, status, thumbnail_url, "
    "min_score, max_score, created_at"
)

# Every statement that reads games also returns each game's category and level (two primary-key joins
# on small tables, after the games are chosen): `Game.category` and `Game.level` then cost no statement
# of their own, because the Loaders prime the category and level loaders from these rows (issue 11).
_REFERENCES = (
    "c.name AS category_name, c.description AS category_description, "
    "l.name AS level_name, l.position AS level_position"
)


def _with_references(games_sql: str, order_by: str = "") -> str:
    """`games_sql` (selecting _COLUMNS) as a subquery, its rows joined to their category and level;
    the inner statement keeps its own plan (index, LIMIT), `order_by` restores its order outside."""
    return (
        f"SELECT g.*, {_REFERENCES} FROM ({games_sql}) g "  # noqa: S608
        "JOIN categories c ON c.id = g.category_id JOIN levels l ON l.id = g.level_id" + order_by
    )


SELECT_GAMES_BY_IDS = _with_references(f"SELECT {_COLUMNS} FROM games WHERE id = ANY($1::bigint[])")  # noqa: S608
SELECT_CATEGORIES_BY_IDS = "SELECT id, name, description FROM categories WHERE id = ANY($1::bigint[])"
SELECT_ALL_CATEGORIES = "SELECT id, name, description FROM categories ORDER BY name, id"
SELECT_LEVELS_BY_IDS = "SELECT id, name, position FROM levels WHERE id = ANY($1::bigint[])"

# The library: live games newest first. Optional filters are AND-ed; NULL means "any".
# Separate statements per filter shape keep each one on its partial index.
_LIBRARY = f"""
SELECT {_COLUMNS} FROM games
WHERE status = 'live' {{filters}} {{after}}
ORDER BY created_at DESC, id DESC
LIMIT $1
"""  # noqa: S608
_AFTER_LIBRARY = "AND (created_at, id) < ($2::timestamptz, $3::bigint)"

_CATEGORY_PAGE = f"""
SELECT g.* FROM unnest($1::bigint[]) AS p(category_id)
CROSS JOIN LATERAL (
    SELECT {_COLUMNS} FROM games
    WHERE status = 'live' AND category_id = p.category_id {{after}}
    ORDER BY created_at DESC, id DESC
    LIMIT $2
) g
"""  # noqa: S608
_BY_CATEGORY_NEWEST = " ORDER BY g.category_id, g.created_at DESC, g.id DESC"
SELECT_GAME_PAGES_BY_CATEGORIES = _with_references(_CATEGORY_PAGE.format(after=""), _BY_CATEGORY_NEWEST)
SELECT_GAME_PAGES_BY_CATEGORIES_AFTER = _with_references(
    _CATEGORY_PAGE.format(after="AND (created_at, id) < ($3::timestamptz, $4::bigint)"), _BY_CATEGORY_NEWEST
)
COUNT_LIVE_GAMES_BY_CATEGORIES = """
SELECT category_id, count(*) AS n FROM games
WHERE status = 'live' AND category_id = ANY($1::bigint[]) GROUP BY category_id
"""


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class GameRow:
    id: int
    title: str
    description: str
    category_id: int
    level_id: int
    difficulty: str
    status: str
    thumbnail_url: str | None
    min_score: int
    max_score: int
    created_at: datetime

    @property
    def keyset(self) -> tuple[datetime, int]:
        return (self.created_at, self.id)


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class CategoryRow:
    id: int
    name: str
    description: str


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class LevelRow:
    id: int
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class GameFilterArgs:
    category_id: int | None = None
    level_id: int | None = None
    difficulty: str | None = None


_FILTER_COLUMNS = ("category_id", "level_id", "difficulty")

_LIBRARY_COUNT = "SELECT count(*) FROM games WHERE status = 'live' {filters}"


def _filter_clauses(present: tuple[bool, bool, bool], first_param: int) -> str:
    clauses: list[str] = []
    param = first_param
    for column, on in zip(_FILTER_COLUMNS, present, strict=True):
        if on:
            cast = "text" if column == "difficulty" else "bigint"
            clauses.append(f"AND {column} = ${param}::{cast}")
            param += 1
    return " ".join(clauses)


def _build_library_sql(present: tuple[bool, bool, bool], with_after: bool) -> str:
    filters = _filter_clauses(present, 4 if with_after else 2)
    page = _LIBRARY.format(filters=filters, after=_AFTER_LIBRARY if with_after else "")
    return _with_references(page, " ORDER BY g.created_at DESC, g.id DESC")


# Every filter shape's statement, built once at import from constant fragments (no values inside).
LIBRARY_STATEMENTS: dict[tuple[tuple[bool, bool, bool], bool], str] = {
    ((c, lv, d), after): _build_library_sql((c, lv, d), after)
    for c in (False, True)
    for lv in (False, True)
    for d in (False, True)
    for after in (False, True)
}

LIBRARY_COUNT_STATEMENTS: dict[tuple[bool, bool, bool], str] = {
    (c, lv, d): _LIBRARY_COUNT.format(filters=_filter_clauses((c, lv, d), 1))
    for c in (False, True)
    for lv in (False, True)
    for d in (False, True)
}


check_columns(GameRow, _COLUMNS)
check_columns(CategoryRow, "id, name, description")
check_columns(LevelRow, "id, name, position")


# Told the categories and levels a game statement returned (the Loaders prime their loaders with them).
References = Callable[[Sequence[CategoryRow], Sequence[LevelRow]], None]
_GAME_FIELDS = 11  # GameRow's columns come first in every game statement, the references after them


def _games(records: Sequence[Any], references: References | None) -> list[GameRow]:
    """GameRows of game statements' records; their categories and levels handed to `references`."""
    games = [GameRow(*r[:_GAME_FIELDS]) for r in records]
    if references is not None and records:
        # A page of 50 games names a handful of categories and levels: build each row once, not per game.
        categories: dict[int, CategoryRow] = {}
        levels: dict[int, LevelRow] = {}
        for r in records:
            if r[3] not in categories:
                categories[r[3]] = CategoryRow(r[3], r[11], r[12])
            if r[4] not in levels:
                levels[r[4]] = LevelRow(r[4], r[13], r[14])
        references(list(categories.values()), list(levels.values()))
    return games


async def fetch_games_by_ids(
    db: Executor, ids: Sequence[int], references: References | None = None
) -> list[GameRow | None]:
    rows = await db.fetch(SELECT_GAMES_BY_IDS, list(ids))
    return by_id(_games(rows, references), ids)


async def fetch_categories_by_ids(db: Executor, ids: Sequence[int]) -> list[CategoryRow | None]:
    rows = await db.fetch(SELECT_CATEGORIES_BY_IDS, list(ids))
    return by_id([CategoryRow(*r) for r in rows], ids)


async def fetch_all_categories(db: Executor) -> list[CategoryRow]:
    return [CategoryRow(*r) for r in await db.fetch(SELECT_ALL_CATEGORIES)]


async def fetch_levels_by_ids(db: Executor, ids: Sequence[int]) -> list[LevelRow | None]:
    rows = await db.fetch(SELECT_LEVELS_BY_IDS, list(ids))
    return by_id([LevelRow(*r) for r in rows], ids)


async def fetch_library_pages(
    db: Executor, keys: Sequence[tuple[Hashable, PageArgs]], references: References | None = None
) -> list[Page[GameRow]]:
    """One page of the live library per key; the key's PageArgs.filter is a GameFilterArgs."""
    pages: list[Page[GameRow]] = []
    for _, args in keys:
        filters = args.filter if isinstance(args.filter, GameFilterArgs) else GameFilterArgs()
        values = [getattr(filters, column) for column in _FILTER_COLUMNS]
        present = (values[0] is not None, values[1] is not None, values[2] is not None)
        sql = LIBRARY_STATEMENTS[(present, args.after is not None)]
        params: list[object] = [args.first + 1]
        if args.after is not None:
            params.extend(args.after)
        params.extend(v for v in values if v is not None)
        rows = _games(await db.fetch(sql, *params), references)
        pages.append(Page(tuple(rows[: args.first]), len(rows) > args.first))
    return pages


async def count_library(db: Executor, keys: Sequence[GameFilterArgs]) -> list[int]:
    """Every live game matching each filter (the library's totalCount): one statement per filter."""
    counts: list[int] = []
    for filters in keys:
        values = [getattr(filters, column) for column in _FILTER_COLUMNS]
        present = (values[0] is not None, values[1] is not None, values[2] is not None)
        sql = LIBRARY_COUNT_STATEMENTS[present]
        counts.append(await db.fetchval(sql, *(v for v in values if v is not None)))
    return counts


async def fetch_game_pages_by_categories(
    db: Executor, keys: Sequence[tuple[int, PageArgs]], references: References | None = None
) -> list[Page[GameRow]]:
    found: dict[tuple[int, PageArgs], Page[GameRow]] = {}
    for args, category_ids in group_by_args(keys).items():
        if args.after is None:
            rows = await db.fetch(SELECT_GAME_PAGES_BY_CATEGORIES, category_ids, args.first + 1)
        else:
            rows = await db.fetch(
                SELECT_GAME_PAGES_BY_CATEGORIES_AFTER, category_ids, args.first + 1, *args.after
            )
        pages = pages_by_parent(_games(rows, references), lambda g: g.category_id, args.first)
        for category_id in category_ids:
            found[(category_id, args)] = pages.get(category_id, EMPTY_PAGE)
    return [found[key] for key in keys]


async def count_live_games_by_categories(db: Executor, category_ids: Sequence[int]) -> list[int]:
    rows = await db.fetch(COUNT_LIVE_GAMES_BY_CATEGORIES, list(category_ids))
    counts = {r["category_id"]: r["n"] for r in rows}
    return [counts.get(c, 0) for c in category_ids]
