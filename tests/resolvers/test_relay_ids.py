"""Global ids and cursors: remembered per process (resolvers/relay.py), and the same strings either way."""

from __future__ import annotations

import datetime as dt

import pytest

from mlc_graph.platform.errors import NotFoundError
from resolvers.relay import (
    _encode,
    decode_cursor,
    decode_global_id,
    encode_cursor,
    encode_global_id,
    expect_global_id,
)


def test_global_ids_round_trip_and_repeat_identically() -> None:
    first = encode_global_id("Game", 42)
    assert first == encode_global_id("Game", 42) == "R2FtZTo0Mg"
    assert decode_global_id(first) == ("Game", 42)
    assert encode_global_id("Level", 42) != first
    with pytest.raises(NotFoundError):
        expect_global_id(first, "Student")


def test_cursors_are_the_same_whether_remembered_or_not() -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.UTC)
    keyset = (when, 17)
    remembered = encode_cursor(keyset)
    assert remembered == encode_cursor(keyset) == encode_cursor([when, 17]) == _encode(keyset)
    assert decode_cursor(remembered, (dt.datetime, int)) == keyset
    assert encode_cursor(("Ada", "Byron", 3)) != encode_cursor(("Ada", "Byron", 4))
