"""The README documents every setting the code reads and links only documents that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_NAME = re.compile(r"\"((?:MLC|DATABASE)_[A-Z0-9_]+|REDIS_URL|HOST|PORT)\"")


def test_every_environment_variable_is_documented() -> None:
    read = {m for path in (ROOT / "mlc_graph").rglob("*.py") for m in ENV_NAME.findall(path.read_text())}
    assert read, "the scan found no settings at all"
    missing = sorted(name for name in read if name not in README and not name.startswith("MLC_LOADTEST_"))
    assert missing == [], f"settings missing from README's Configuration table: {missing}"


def test_linked_documents_exist() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_readme_names_the_test_command_ci_runs() -> None:
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
