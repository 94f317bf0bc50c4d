"""The DataLoader base every loader builds on: bound to one request's executor, no cross-request cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from aiodataloader import DataLoader

from mlc_graph.platform.db import Executor

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchFn = Callable[[Executor, Sequence[K]], Awaitable[Sequence[V]]]


class Loader(DataLoader[K, V]):
    """A DataLoader whose batch function receives the request's executor.

    The batch function must return exactly one value per key, in key order.
    """

    def __init__(self, db: Executor, batch: BatchFn[K, V]) -> None:
        self._db = db
        self._batch = batch
        super().__init__()

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        return list(await self._batch(self._db, keys))


# ROWS: the rows a request builds by the hundred (students, assignments, games, board lines, pages) are
# `@dataclass(slots=True, unsafe_hash=True)`, not frozen: a frozen dataclass sets every field through
# object.__setattr__: 0.81 us for eight fields against 0.17 us (CPython 3.11, `python -m bench.micro`),
# 7 % of the dashboard's CPU in-process (`python -m bench.profile`). They compare and hash by value as
# frozen ones do; nothing mutates a row (rows are read by resolvers and reused across requests by the
# live-board page memo), so treat them as frozen.


def check_columns(row_type: type, columns: str) -> None:
    """Rows built positionally (`Row(*record)`, twice as fast as `Row(**record)` for frozen dataclasses,
    issue 7) need the SELECT list in field order: refuse a drift at import instead of mixing columns."""
    names = tuple(field.name for field in fields(row_type))
    selected = tuple(column.strip() for column in columns.split(","))
    if names != selected:
        raise TypeError(f"{row_type.__name__} fields {names} differ from the selected columns {selected}")


def by_id(rows: Sequence[Any], keys: Sequence[int]) -> list[Any]:
    """Order rows (each with .id) to match keys; None where a key has no row."""
    found = {row.id: row for row in rows}
    return [found.get(key) for key in keys]
