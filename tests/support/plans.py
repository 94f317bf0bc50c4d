"""Reading EXPLAIN (FORMAT JSON) output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan (the parsed EXPLAIN output), at any depth."""
    if isinstance(plan, dict):
        yield plan
        for value in plan.values():
            yield from plan_nodes(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from plan_nodes(value)
