"""Web vitals: one batched upsert per report, and the per-page summary (p75 and rating shares)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mlc_graph.domain.vitals import Metric
from mlc_graph.platform.db import Executor

# A re-sent sample (same metric id and name: CLS and INP are reported again as they change, beacons
# are retried) replaces the earlier value instead of counting twice.
UPSERT_WEB_VITALS = """
INSERT INTO web_vitals (name, value, rating, metric_id, page, release, navigation_type, org_id)
SELECT r.name, r.value, r.rating, r.metric_id, r.page, r.release, r.navigation_type, $8
FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS r(name, value, rating, metric_id, page, release, navigation_type)
ON CONFLICT (metric_id, name) DO UPDATE SET value = EXCLUDED.value, rating = EXCLUDED.rating
"""
SELECT_WEB_VITALS_SUMMARY = """
SELECT name,
       count(*) AS samples,
       percentile_cont(0.75) WITHIN GROUP (ORDER BY value) AS p75,
       avg((rating = 'good')::int)::float8 AS good,
       avg((rating = 'needs-improvement')::int)::float8 AS needs_improvement,
       avg((rating = 'poor')::int)::float8 AS poor
FROM web_vitals
WHERE page = $1 AND recorded_at >= $2 AND ($3::text IS NULL OR release = $3::text)
GROUP BY name
ORDER BY name
"""


@dataclass(frozen=True, slots=True)
class VitalSummaryRow:
    name: str
    samples: int
    p75: float
    good: float
    needs_improvement: float
    poor: float


async def insert_web_vitals(db: Executor, metrics: Sequence[Metric], org_id: int | None) -> None:
    """Store a validated batch (ids unique within it) in one statement."""
    await db.execute(
        UPSERT_WEB_VITALS,
        [m.name for m in metrics],
        [m.value for m in metrics],
        [m.rating for m in metrics],
        [m.metric_id for m in metrics],
        [m.page for m in metrics],
        [m.release for m in metrics],
        [m.navigation_type for m in metrics],
        org_id,
    )


async def fetch_web_vitals_summary(
    db: Executor, page: str, since: datetime, release: str | None = None
) -> list[VitalSummaryRow]:
    rows = await db.fetch(SELECT_WEB_VITALS_SUMMARY, page, since, release)
    return [VitalSummaryRow(**r) for r in rows]
