"""Batch forms of the hottest relation resolvers: one coroutine for all parents at a position.

graphql-core calls `Assignment.game` once per assignment (160 coroutines in a teacher dashboard); the
compiled executor calls the batch form once with every assignment of the pass and gets one value per
parent, in parent order. Each batch form must return exactly what the resolver returns for each parent:
the resolver stays the source of truth (graphql-core, mutations and every fallback use it), and the
differential and hypothesis tests compare both paths byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from typing import Any

from loaders.base import Loader
from resolvers import assignments, games, leaderboards, scores
from resolvers.access import see_student

BatchResolver = Callable[[Sequence[Any], Any, Mapping[str, Any]], Coroutine[Any, Any, list[Any]]]


async def load_each(loader: Loader[Any, Any], keys: Sequence[Hashable]) -> list[Any]:
    """`loader.load(key)` for every key (same DataLoader batch and cache), each distinct key once."""
    distinct = list(dict.fromkeys(keys))
    values = await loader.load_many(distinct)
    found = dict(zip(distinct, values, strict=True))
    return [found[key] for key in keys]


async def game_of_each(roots: Sequence[Any], info: Any, args: Mapping[str, Any]) -> list[Any]:
    return await load_each(info.context.loaders.games_by_id, [root.game_id for root in roots])


async def category_of_each(roots: Sequence[Any], info: Any, args: Mapping[str, Any]) -> list[Any]:
    return await load_each(info.context.loaders.categories_by_id, [root.category_id for root in roots])


async def level_of_each(roots: Sequence[Any], info: Any, args: Mapping[str, Any]) -> list[Any]:
    return await load_each(info.context.loaders.levels_by_id, [root.level_id for root in roots])


async def visible_student_of_each(roots: Sequence[Any], info: Any, args: Mapping[str, Any]) -> list[Any]:
    """LeaderboardEntry.student: the student when the viewer may see them, else null (no read)."""
    viewer = info.context.viewer
    visible = [viewer.can_see_student(root.student_id, root.org_id) for root in roots]
    keys = [root.student_id for root, seen in zip(roots, visible, strict=True) if seen]
    rows = iter(await load_each(info.context.loaders.students_by_id, keys))
    return [see_student(viewer, next(rows)) if seen else None for seen in visible]


# resolver function -> its batch form; the app hands this to the compiled executor.
BATCH_RESOLVERS: dict[object, BatchResolver] = {
    assignments.resolve_game: game_of_each,
    scores.resolve_game: game_of_each,
    games.resolve_category: category_of_each,
    games.resolve_level: level_of_each,
    leaderboards.resolve_entry_student: visible_student_of_each,
}
