"""The hot row types (loaders/base.py ROWS) are plain slotted dataclasses for speed, but keep the value
semantics frozen ones had: equal rows compare and hash alike (dictionaries and sets of rows rely on it)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from loaders.assignments import AssignmentRow
from loaders.games import CategoryRow, GameRow, LevelRow
from loaders.leaderboards import RankedRow
from loaders.live_boards import LiveEntry
from loaders.organizations import OrganizationRow
from loaders.pagination import Page
from loaders.scores import BestScoreRow, ScoreRow
from loaders.students import StudentRow
from loaders.teachers import TeacherRow

ROWS = [
    AssignmentRow, CategoryRow, GameRow, LevelRow, RankedRow, LiveEntry, OrganizationRow, Page,
    BestScoreRow, ScoreRow, StudentRow, TeacherRow,
]  # fmt: skip


def _values(row_type: type, seed: int) -> list[Any]:
    return [(seed, i, datetime(2026, 1, 1, tzinfo=UTC)) for i, _ in enumerate(dataclasses.fields(row_type))]


@pytest.mark.parametrize("row_type", ROWS, ids=lambda t: t.__name__)
def test_rows_compare_and_hash_by_value(row_type: type) -> None:
    one, same, other = (
        row_type(*_values(row_type, 1)),
        row_type(*_values(row_type, 1)),
        row_type(*_values(row_type, 2)),
    )
    assert one == same and hash(one) == hash(same)
    assert one != other
    assert len({one, same, other}) == 2
    assert not hasattr(one, "__dict__")  # slotted: no per-instance dictionary
