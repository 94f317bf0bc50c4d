"""The alerting rules parse and fire as the spec says, checked by promtool on synthetic series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: apt-get install prometheus (.ci/run does)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=OPS, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rules_fire_on_synthetic_series() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_spec_threshold_is_in_the_rules() -> None:
    text = (OPS / "alerts.yml").read_text()
    for expected in (
        "p95_5m > 2\n        for: 5m",
        "p95_5m > 1\n        for: 10m",
        "rate5m > 0.01\n        for: 5m",
        "rate5m > 0.005\n        for: 10m",
        "in_use_ratio > 0.9\n        for: 5m",
        "increase1m > 10",
        "hit_ratio:rate5m < 0.85\n        for: 1h",
    ):
        assert expected in text
