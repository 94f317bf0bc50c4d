"""Issue 12 items 21 and 22: `make run` installs what serving needs, and the README gets a new user going."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _dry_run(target: str, venv: Path) -> list[str]:
    """The pip commands `make TARGET` would run in an empty virtualenv directory (make -n runs nothing)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "pip install" in line and "-e" in line]


def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    installs = _dry_run("run", tmp_path / "venv")
    assert installs, "make run installs the package"
    assert all("'.[embedded]'" in line for line in installs), installs
    assert not any(re.search(r"dev|load", line.split("-e", 1)[1]) for line in installs), installs


def test_make_test_installs_the_dev_and_load_extras(tmp_path: Path) -> None:
    installs = _dry_run("test", tmp_path / "venv")
    assert any("'.[dev,embedded,load]'" in line for line in installs), installs


def test_readme_names_the_prerequisites() -> None:
    prerequisites = README.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    for needed in ("Python 3.11", "`make`", "`npm`"):
        assert needed in prerequisites


def test_readme_commands_run_from_the_virtualenv_and_reach_the_embedded_database() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    # `mlc-graph` is not on PATH after `make run`: every command line says where it is.
    assert not [line for line in lines if line.startswith("mlc-graph")], lines
    assert ".venv/bin/mlc-graph import-students" in README
    assert "source .venv/bin/activate" in README
    assert 'export DATABASE_URL="$(cat .mlc/database-url)"' in README
