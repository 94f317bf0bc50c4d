"""`mlc-graph tiers`: the table in effect, with numbers where the docs name a setting."""

from __future__ import annotations

import pytest

from mlc_graph.cli import main as cli_main


def _row(out: str, tier: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"| {tier} |"))


def test_tiers_prints_the_cost_budget_in_effect(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLC_COST_BUDGET", "4200")
    monkeypatch.setenv("MLC_TIER_OVERRIDES", '{"SOLO": {"cost_budget": 7000}}')
    assert cli_main(["tiers"]) == 0
    out = capsys.readouterr().out
    assert "MLC_COST_BUDGET" not in out
    assert _row(out, "PRELUDE").endswith("| 4,200 |")
    assert _row(out, "SOLO").endswith("| 7,000 |")
    assert _row(out, "ENSEMBLE").endswith("| 10,000 |")
