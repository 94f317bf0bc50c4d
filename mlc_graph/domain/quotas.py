"""One hourly quota of a tier as the RateLimit headers and `viewer.rateLimit` report it (a pure value)."""

from __future__ import annotations

from dataclasses import dataclass

from mlc_graph.domain.tiers import WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class Quota:
    """One policy of the hourly window: what it allows, what is used and left, when it resets."""

    name: str  # the policy id in RateLimit-Policy / RateLimit
    unit: str
    limit: int
    used: int
    remaining: int
    reset_in: int
    window: int = WINDOW_SECONDS

    @property
    def share_left(self) -> float:
        return self.remaining / self.limit if self.limit > 0 else 0.0

    def policy_item(self) -> str:
        # A structured-field Item (RFC 9651): the policy id as a String, then its parameters. `requests`
        # is the draft's default unit; cost points are not a registered unit, so they are named.
        unit = "" if self.unit == "requests" else f';qu="{self.unit}"'
        return f'"{self.name}";q={self.limit};w={self.window}{unit}'

    def state_item(self) -> str:
        return f'"{self.name}";r={self.remaining};t={self.reset_in}'
