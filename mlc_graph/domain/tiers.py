"""The subscription tiers and their quotas: the one place every limit is read from.

Support changes a limit here (or, without a deploy, with MLC_TIER_OVERRIDES, a JSON object such as
`{"PRELUDE": {"requests_per_hour": 600}}`); the rate limiter, the session counter and the student cap
all ask `TierTable.for_tier`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from mlc_graph.platform.config import ConfigError

TIER_NAMES = ("PRELUDE", "SOLO", "ENSEMBLE")
# Unknown or missing tiers are treated as the free trial: the smallest quotas are the safe default.
DEFAULT_TIER = "PRELUDE"
WINDOW_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Tier:
    """Quotas of one tier. `students` None means "the organization's seat_count"; `cost_budget` None
    means the server's MLC_COST_BUDGET (the most one operation may cost)."""

    name: str
    students: int | None
    requests_per_hour: int
    sessions: int
    cost_per_hour: int
    cost_budget: int | None = None

    def student_cap(self, seat_count: int) -> int:
        return seat_count if self.students is None else self.students


# The product spec's table; cost points per hour allow an average of 100 points per request, so one
# expensive report cannot be laundered as many cheap requests (see docs/REALTIME.md).
DEFAULT_TIERS: dict[str, Tier] = {
    "PRELUDE": Tier("PRELUDE", students=19, requests_per_hour=500, sessions=5, cost_per_hour=50_000),
    "SOLO": Tier("SOLO", students=19, requests_per_hour=1_000, sessions=10, cost_per_hour=100_000),
    # Districts run reports over whole schools: twice the default per-operation budget.
    "ENSEMBLE": Tier(
        "ENSEMBLE",
        students=None,
        requests_per_hour=3_000,
        sessions=100,
        cost_per_hour=300_000,
        cost_budget=10_000,
    ),
}

_OVERRIDABLE = {f.name for f in fields(Tier)} - {"name"}


@dataclass(frozen=True, slots=True)
class TierTable:
    tiers: Mapping[str, Tier]

    def for_tier(self, name: str | None) -> Tier:
        return self.tiers.get((name or DEFAULT_TIER).upper(), self.tiers[DEFAULT_TIER])

    def rows(self) -> list[Tier]:
        return [self.tiers[name] for name in TIER_NAMES]

    @classmethod
    def from_overrides(cls, raw: str) -> TierTable:
        """The default table with MLC_TIER_OVERRIDES applied; malformed overrides refuse to start."""
        tiers = dict(DEFAULT_TIERS)
        if not raw.strip():
            return cls(tiers)
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"MLC_TIER_OVERRIDES is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ConfigError("MLC_TIER_OVERRIDES must be a JSON object keyed by tier name")
        for name, changes in parsed.items():
            tier = tiers.get(str(name).upper())
            if tier is None or not isinstance(changes, dict):
                raise ConfigError(f"MLC_TIER_OVERRIDES: unknown tier {name!r} or changes not an object")
            unknown = set(changes) - _OVERRIDABLE
            if unknown:
                raise ConfigError(f"MLC_TIER_OVERRIDES: unknown quota {sorted(unknown)} for {name}")
            for key, value in changes.items():
                nullable = key in ("students", "cost_budget")
                if not (isinstance(value, int) and value >= 0) and not (nullable and value is None):
                    raise ConfigError(f"MLC_TIER_OVERRIDES: {name}.{key} must be a non-negative integer")
            tiers[tier.name] = replace(tier, **changes)
        return cls(tiers)


def markdown_table(table: TierTable, default_budget: int | None = None) -> str:
    """The tier table as Markdown. Without `default_budget` (the docs, kept in step with the code by a
    test) a tier without its own cost budget reads `MLC_COST_BUDGET`; with it, the number in effect."""
    lines = [
        "| tier | students | API requests per user per hour | cost points per user per hour "
        "| concurrent sessions per organization | cost budget per operation |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for tier in table.rows():
        students = "seat_count" if tier.students is None else str(tier.students)
        budget_in_effect = default_budget if tier.cost_budget is None else tier.cost_budget
        budget = "MLC_COST_BUDGET" if budget_in_effect is None else f"{budget_in_effect:,}"
        quotas = f"{tier.requests_per_hour:,} | {tier.cost_per_hour:,} | {tier.sessions} | {budget}"
        lines.append(f"| {tier.name} | {students} | {quotas} |")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def tiers_in_effect(overrides: str) -> TierTable:
    """The table MLC_TIER_OVERRIDES makes (parsed once per distinct value): what every quota reads."""
    return TierTable.from_overrides(overrides)


def student_limit(tier: str | None, seat_count: int, table: TierTable) -> int:
    """How many students an organization of this tier may have under `table` (the one in effect: a
    default here is how the overrides were once ignored, issue 12)."""
    return table.for_tier(tier).student_cap(seat_count)
