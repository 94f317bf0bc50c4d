"""schema.graphql is the public contract: it must equal what `mlc-graph export-schema` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from mlc_graph.cli import main
from resolvers.schema import schema_sdl

SNAPSHOT = Path(__file__).resolve().parents[2] / "schema.graphql"


def describe_drift(committed: str, current: str) -> str:
    old, new = build_schema(committed), build_schema(current)
    lines = [f"BREAKING {c.type.name}: {c.description}" for c in find_breaking_changes(old, new)]
    lines += [f"DANGEROUS {c.type.name}: {c.description}" for c in find_dangerous_changes(old, new)]
    lines.append(
        "Update it with: .venv/bin/mlc-graph export-schema > schema.graphql (same commit as the code)"
    )
    return "\n".join(lines)


def test_schema_graphql_matches_the_code() -> None:
    committed = SNAPSHOT.read_text(encoding="utf-8")
    current = schema_sdl()
    assert committed == current, "schema.graphql is out of date:\n" + describe_drift(committed, current)


def test_drift_report_lists_breaking_changes() -> None:
    old = "type Query { a: Int, b: String }"
    new = "type Query { a: String, c: Int }"
    report = describe_drift(old, new)
    assert "BREAKING FIELD_REMOVED: Field Query.b was removed." in report
    assert "BREAKING FIELD_CHANGED_KIND: Field Query.a changed type from Int to String." in report


def test_export_schema_command_prints_the_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema"]) == 0
    assert capsys.readouterr().out == SNAPSHOT.read_text(encoding="utf-8")


def test_contract_names_are_present() -> None:
    sdl = schema_sdl()
    for needle in (
        "interface Node",
        "node(id: ID!): Node",
        "viewer: Viewer!",
        "games(first: Int = 20, after: String = null, filter: GameFilter = null): GameConnection!",
        "leaderboard(gameId: ID!, scope: LeaderboardScope = GLOBAL, first: Int = 10): Leaderboard!",
        "classProgress(teacherId: ID!): ClassProgress!",
        "viewerEntry: LeaderboardEntry",
    ):
        assert needle in sdl, needle
    assert "password" not in sdl.lower()
    assert "email" not in sdl.lower()
