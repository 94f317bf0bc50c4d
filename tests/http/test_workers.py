"""The default worker count follows the container's CPU limit (cgroup v2 and v1), not the host's cores."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from mlc_graph.http.server import cgroup_cpu_limit, cpu_count, default_workers
from mlc_graph.platform.config import Settings


def _v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text + "\n")
    return root


def _v1(root: Path, quota: int, period: int = 100_000) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("text", "limit"),
    [("50000 100000", 0.5), ("150000 100000", 1.5), ("400000 100000", 4.0), ("max 100000", None)],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, text: str, limit: float | None) -> None:
    assert cgroup_cpu_limit(_v2(tmp_path, text)) == limit


@pytest.mark.parametrize(("quota", "limit"), [(50_000, 0.5), (200_000, 2.0), (-1, None)])
def test_cgroup_v1_cfs_quota(tmp_path: Path, quota: int, limit: float | None) -> None:
    assert cgroup_cpu_limit(_v1(tmp_path, quota)) == limit


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


def test_half_a_cpu_starts_one_worker_and_the_limit_never_adds_cores(tmp_path: Path) -> None:
    """`--cpus=0.5` started two workers on a 2-core host; now one. A limit above the cores changes nothing."""
    cores = len(os.sched_getaffinity(0))
    half = tmp_path / "half"
    half.mkdir()
    assert cpu_count(_v2(half, "50000 100000")) == 1
    big = tmp_path / "big"
    big.mkdir()
    assert cpu_count(_v2(big, f"{(cores + 8) * 100_000} 100000")) == cores


def test_production_defaults_workers_to_the_usable_cores() -> None:
    production = replace(Settings(), env="production")
    assert default_workers(production) == cpu_count()
    assert default_workers(replace(production, workers=3)) == 3
    assert default_workers(Settings()) == 1
