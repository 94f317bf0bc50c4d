"""The game catalogue: Game, Category, Level and the live library."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from loaders.games import CategoryRow, GameFilterArgs, GameRow, LevelRow, fetch_all_categories
from resolvers.directives import CacheControl, ListSize
from resolvers.enums import Difficulty, GameStatus
from resolvers.info import Info
from resolvers.relay import (
    Connection,
    Node,
    connection_from_page,
    expect_global_id,
    global_id_field,
    page_args,
)


async def resolve_category(root: GameRow, info: Info) -> Category:
    return await info.context.loaders.categories_by_id.load(root.category_id)  # type: ignore[return-value]


async def resolve_level(root: GameRow, info: Info) -> Level:
    return await info.context.loaders.levels_by_id.load(root.level_id)  # type: ignore[return-value]


# How long a CDN may serve the catalogue (docs/HTTP.md, "HTTP caching"): it is the same for every
# organization and user. Games go live and get edited now and then; categories and levels hardly ever.
GAMES_MAX_AGE = 300
CATALOGUE_MAX_AGE = 3600


@strawberry.type(
    description="A music-theory game students play.",
    directives=[CacheControl(max_age=GAMES_MAX_AGE)],
)
class Game(Node):
    id: strawberry.ID = global_id_field("Game")
    title: str
    description: str
    difficulty: Difficulty
    status: GameStatus
    thumbnail_url: str | None
    min_score: int = strawberry.field(description="Lowest plausible score.")
    max_score: int = strawberry.field(description="Highest plausible score.")
    created_at: dt.datetime
    category: Category = strawberry.field(resolver=resolve_category)
    level: Level = strawberry.field(resolver=resolve_level)

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, GameRow)


async def resolve_category_games(
    root: CategoryRow, info: Info, first: int | None = 20, after: str | None = None
) -> Connection[Game]:
    args = page_args(first, after, (dt.datetime, int))
    loaders = info.context.loaders
    page = await loaders.game_pages_by_category.load((root.id, args))

    async def count() -> int:
        return await loaders.live_game_count_by_category.load(root.id)

    return connection_from_page(page, after is not None, count)


@strawberry.type(
    description="A family of games (Rhythm, Intervals, ...).",
    directives=[CacheControl(max_age=CATALOGUE_MAX_AGE)],
)
class Category(Node):
    id: strawberry.ID = global_id_field("Category")
    name: str
    description: str
    # The list changes as games go live, so its count too: the games' age, not the category's.
    games: Connection[Game] = strawberry.field(
        resolver=resolve_category_games,
        description="Live games of the category, newest first.",
        directives=[ListSize(slicing_arguments=["first"]), CacheControl(max_age=GAMES_MAX_AGE)],
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, CategoryRow)


@strawberry.type(
    description="A step of the curriculum, from first lessons to advanced.",
    directives=[CacheControl(max_age=CATALOGUE_MAX_AGE)],
)
class Level(Node):
    id: strawberry.ID = global_id_field("Level")
    name: str
    position: int = strawberry.field(description="Order of the level in the curriculum (1 = first).")

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, LevelRow)


@strawberry.input(description="Narrow the library; every given field must match.")
class GameFilter:
    category_id: strawberry.ID | None = None
    level_id: strawberry.ID | None = None
    difficulty: Difficulty | None = None


async def resolve_games(
    info: Info, first: int | None = 20, after: str | None = None, filter: GameFilter | None = None
) -> Connection[Game]:
    info.context.viewer  # noqa: B018 - the library needs a signed-in user like everything else
    filters = GameFilterArgs()
    if filter is not None:
        filters = GameFilterArgs(
            category_id=expect_global_id(filter.category_id, "Category") if filter.category_id else None,
            level_id=expect_global_id(filter.level_id, "Level") if filter.level_id else None,
            difficulty=filter.difficulty.value if filter.difficulty is not None else None,
        )
    args = page_args(first, after, (dt.datetime, int), filters)
    loaders = info.context.loaders
    page = await loaders.library_pages.load(("library", args))

    async def count() -> int:
        return await loaders.library_count.load(filters)

    return connection_from_page(page, after is not None, count)


async def resolve_categories(info: Info) -> list[Category]:
    info.context.viewer  # noqa: B018
    return await fetch_all_categories(info.context.db)  # type: ignore[return-value]
