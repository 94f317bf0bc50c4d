"""Subscription tiers: every per-tier limit, in one table that support can read (and override by env).

| tier     | students   | requests/user/hour | concurrent sessions/org |
| PRELUDE  | 19         | 500                | 5                       |
| SOLO     | 19         | 1,000              | 10                      |
| ENSEMBLE | seat_count | 3,000              | 100                     |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TierLimits:
    name: str
    max_students: int | None  # None: the organization's seat_count
    requests_per_hour: int
    concurrent_sessions: int
    cost_points_per_hour: int
    cost_budget_per_operation: int

    def student_limit(self, seat_count: int) -> int:
        return seat_count if self.max_students is None else self.max_students


TIERS: dict[str, TierLimits] = {
    "PRELUDE": TierLimits("PRELUDE", 19, 500, 5, 250_000, 5_000),
    "SOLO": TierLimits("SOLO", 19, 1_000, 10, 500_000, 5_000),
    "ENSEMBLE": TierLimits("ENSEMBLE", None, 3_000, 100, 3_000_000, 10_000),
}


def tier_limits(tier: str) -> TierLimits:
    """Limits of a tier name as stored in organizations.tier; unknown names get the free trial's."""
    return TIERS.get(tier, TIERS["PRELUDE"])


def student_limit(tier: str, seat_count: int) -> int:
    """How many students an organization of this tier may have."""
    return tier_limits(tier).student_limit(seat_count)
