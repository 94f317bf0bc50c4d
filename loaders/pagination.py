"""Keyset pages for one-to-many relations, loaded for many parents in one statement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class PageArgs:
    """A page request: `after` is the decoded keyset of the last row already seen."""

    first: int
    after: tuple[Any, ...] | None = None
    filter: Hashable = None


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class Page(Generic[R]):
    rows: tuple[R, ...]
    has_next: bool


def group_by_args(keys: Sequence[tuple[int, PageArgs]]) -> dict[PageArgs, list[int]]:
    """Parents that ask for the same page shape share one statement."""
    groups: dict[PageArgs, list[int]] = defaultdict(list)
    for parent_id, args in keys:
        if parent_id not in groups[args]:
            groups[args].append(parent_id)
    return groups


def parents_by_filter(keys: Sequence[tuple[int, Hashable]]) -> dict[Hashable, list[int]]:
    """Count keys (parent id, filter): parents under the same filter share one counting statement."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for parent_id, filter_ in keys:
        if parent_id not in groups[filter_]:
            groups[filter_].append(parent_id)
    return groups


def counts_in_key_order(
    keys: Sequence[tuple[int, Hashable]], counted: dict[tuple[int, Hashable], int]
) -> list[int]:
    """One count per key; a parent without rows counted 0."""
    return [counted.get(key, 0) for key in keys]


def pages_by_parent(rows: Sequence[R], parent_of: Callable[[R], int], first: int) -> dict[int, Page[R]]:
    """Split rows (already ordered per parent, each parent at most first + 1) into pages."""
    buckets: dict[int, list[R]] = defaultdict(list)
    for row in rows:
        buckets[parent_of(row)].append(row)
    return {parent: Page(tuple(items[:first]), len(items) > first) for parent, items in buckets.items()}


EMPTY_PAGE: Page[Any] = Page((), False)
