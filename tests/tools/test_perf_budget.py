"""The CI performance budget (bench/budget.py): repeatable counts, and regressions it must catch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import resolvers.relay
from bench.budget import (
    BUDGET_FILE,
    COUNTED_DIRS,
    CallCounter,
    Cost,
    budget_document,
    check,
    load_budget,
    measure_on_own_database,
)
from bench.workloads import BY_KEY
from mlc_graph.platform.db import Executor
from tests.support.database import REDIS_URL

HERE = str(Path(__file__).resolve().parent)
W1, W4 = BY_KEY["W1"], BY_KEY["W4"]
FEW = {"W1": 3, "W4": 10}


def test_check_allows_the_margin_and_no_extra_statement() -> None:
    budget = budget_document({"W4": Cost("W4", 10, 10_000, 10)}, margin=0.01)
    assert budget["workloads"]["W4"] == {"calls_per_request": 1000.0, "statements_per_request": 1.0}
    within = {"W4": Cost("W4", 10, 10_099, 10)}
    assert check(budget, within)[0] == []
    over = {"W4": Cost("W4", 10, 10_200, 10)}
    failures, table = check(budget, over)
    assert failures == ["W4: calls/request 1,020.0 > 1,010.0"]
    assert "| W4 | 1,000.0 | 1,020.0 | +2.0% | 1,010.0 | 1 | 1 | over budget |" in table
    extra_sql = {"W4": Cost("W4", 10, 10_000, 11)}
    assert check(budget, extra_sql)[0] == ["W4: SQL statements/request 1.1 > 1"]
    assert check(budget, {"W9": Cost("W9", 1, 1, 1)})[0][0].startswith("W9: no budget")


def test_committed_budget_covers_every_workload_with_its_margin() -> None:
    budget = load_budget(BUDGET_FILE)
    assert set(budget["workloads"]) == set(BY_KEY)
    assert 0 < budget["margin"] <= 0.05
    assert budget["workloads"]["W1"]["statements_per_request"] == 4.0


def _counter_seeing_this_file() -> CallCounter:
    # A regression in a test stands for one in the server's own code: count this file like mlc_graph/.
    return CallCounter((*COUNTED_DIRS, HERE))


async def _measure(**options: Any) -> dict[str, Cost]:
    return await measure_on_own_database(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        REDIS_URL,
        workloads=[W1, W4],
        requests=FEW,
        counter_factory=_counter_seeing_this_file,
        **options,
    )


async def test_counts_repeat_and_catch_an_extra_statement_and_a_per_field_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same code, same counts (no flapping); an extra statement per query, and a hook on every id field
    of the dashboard, exceed a 1 % budget built from the first measurement."""
    first, second = await _measure(), await _measure()
    for key in FEW:
        assert first[key].statements == second[key].statements
        assert abs(first[key].calls - second[key].calls) <= 0.001 * first[key].calls
    budget = budget_document(first, margin=0.01)
    assert check(budget, second)[0] == []
    assert first["W1"].statements_per_request == 4 and first["W4"].statements_per_request == 1

    original_fetch = Executor.fetch

    async def fetch_twice(self: Executor, sql: str, *args: Any) -> Any:
        await original_fetch(self, "SELECT 1")
        return await original_fetch(self, sql, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Executor, "fetch", fetch_twice)
        slower = await _measure()
    failures = check(budget, slower)[0]
    assert "W4: SQL statements/request 2 > 1" in failures
    assert any(f.startswith("W1: SQL statements/request") for f in failures)

    encode = resolvers.relay.encode_global_id

    def hooked(type_name: str, pk: int) -> str:  # one extra call for every `id` field answered
        return encode(type_name, pk)

    with monkeypatch.context() as patch:
        patch.setattr(resolvers.relay, "encode_global_id", hooked)
        hooked_run = await _measure()
    failures = check(budget, hooked_run)[0]
    # W1 answers about 120 ids per request: over 1 %. W4 answers one id at most, which the margin allows.
    assert [f.split(":")[0] for f in failures] == ["W1"] and "calls/request" in failures[0]
    assert -0.5 <= hooked_run["W4"].calls_per_request - first["W4"].calls_per_request <= 1.5
    assert hooked_run["W1"].statements == first["W1"].statements
