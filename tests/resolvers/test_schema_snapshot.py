"""schema.graphql is the public contract: it must equal what `mlc-graph export-schema` prints, and break
nothing of the released schema that CHANGELOG.md does not declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from mlc_graph.cli import main
from mlc_graph.tools.schema_changes import undeclared_breaking_changes
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


RELEASED = SNAPSHOT.with_name("schema.released.graphql")
CHANGELOG = SNAPSHOT.with_name("CHANGELOG.md")


def test_no_breaking_change_since_the_release_is_undeclared() -> None:
    """Against the released snapshot, not the regenerated schema.graphql of the same commit."""
    missing = undeclared_breaking_changes(
        RELEASED.read_text(encoding="utf-8"), schema_sdl(), CHANGELOG.read_text(encoding="utf-8")
    )
    assert not missing, (
        "Breaking change(s) since schema.released.graphql: declare each under '## Unreleased' in "
        "CHANGELOG.md (or undo it):\n" + "\n".join(missing)
    )


def test_a_breaking_change_with_a_regenerated_snapshot_fails_until_declared() -> None:
    released = "type Query { a: Int, b: String }"
    current = "type Query { a: Int }"  # b removed, and schema.graphql regenerated to match: no drift
    changelog = "# Changelog\n\n## Unreleased\n\n- Added Query.c.\n\n## 1.0\n\n- BREAKING: Field Query.b was removed.\n"
    assert undeclared_breaking_changes(released, current, changelog) == [
        "- BREAKING: Field Query.b was removed."
    ]
    declared = changelog.replace(
        "## Unreleased\n", "## Unreleased\n\n- BREAKING: Field Query.b was removed.\n"
    )
    assert undeclared_breaking_changes(released, current, declared) == []
    # Adding is not breaking; no declaration needed.
    assert undeclared_breaking_changes(released, "type Query { a: Int, b: String, c: Int }", changelog) == []
