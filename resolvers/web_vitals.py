"""reportWebVitals (the GraphQL twin of POST /api/analytics/web-vitals) and the webVitals report."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import strawberry

from loaders.web_vitals import fetch_web_vitals_summary, insert_web_vitals
from mlc_graph.domain.vitals import MAX_BATCH, InvalidMetric, clean_page, metrics_from
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError
from resolvers.info import Info
from resolvers.write_access import require_staff


@strawberry.enum(description="Core Web Vitals and the other metrics the web-vitals library reports.")
class WebVitalName(enum.StrEnum):
    LCP = "LCP"
    INP = "INP"
    FID = "FID"
    CLS = "CLS"
    FCP = "FCP"
    TTFB = "TTFB"


@strawberry.enum
class WebVitalRating(enum.StrEnum):
    GOOD = "good"
    NEEDS_IMPROVEMENT = "needs-improvement"
    POOR = "poor"


@strawberry.input(description="One sample as the web-vitals library's onLCP/onINP/... callbacks give it.")
class WebVitalInput:
    name: WebVitalName
    value: float = strawberry.field(description="Milliseconds, except CLS (unitless).")
    id: str = strawberry.field(description="The library's metric id: a re-sent sample replaces the earlier.")
    rating: WebVitalRating | None = strawberry.field(
        default=None, description="Checked, then recomputed from the published thresholds."
    )
    navigation_type: str | None = None
    page: str | None = strawberry.field(
        default=None, description="The page's path; defaults to ReportWebVitalsInput.page."
    )
    release: str | None = None


@strawberry.input
class ReportWebVitalsInput:
    metrics: list[WebVitalInput] = strawberry.field(description=f"1 to {MAX_BATCH} samples.")
    page: str | None = strawberry.field(default=None, description="Path of the page measured (default '/').")
    release: str | None = strawberry.field(default=None, description="The SPA build that was measured.")
    client_mutation_id: str | None = None


@strawberry.type
class ReportWebVitalsPayload:
    client_mutation_id: str | None
    accepted: int = strawberry.field(description="Samples stored (repeats of one metric id count once).")


@strawberry.type(description="One metric on one page since a time: p75 and the share of each rating.")
class WebVitalSummary:
    name: WebVitalName
    samples: int
    p75: float = strawberry.field(description="75th percentile, the value Core Web Vitals are judged by.")
    good: float = strawberry.field(description="Share of samples rated good, 0..1.")
    needs_improvement: float
    poor: float


def _sample(metric: WebVitalInput) -> dict[str, Any]:
    return {
        "name": metric.name.value,
        "value": metric.value,
        "id": metric.id,
        "rating": metric.rating.value if metric.rating is not None else None,
        "navigationType": metric.navigation_type,
        "page": metric.page,
        "release": metric.release,
    }


async def resolve_report_web_vitals(info: Info, input: ReportWebVitalsInput) -> ReportWebVitalsPayload:
    """Needs no role (samples change no user data); over HTTP the pipeline admits only signed-in callers,
    anonymous pages use the beacon endpoint."""
    try:
        metrics = metrics_from([_sample(m) for m in input.metrics], input.page or "/", input.release or "")
    except InvalidMetric as exc:
        raise BadUserInputError(str(exc), argument="metrics") from exc
    principal = info.context.principal
    async with client_errors(), info.context.db.transaction() as tx:
        await insert_web_vitals(tx, metrics, principal.org_id if principal is not None else None)
    return ReportWebVitalsPayload(client_mutation_id=input.client_mutation_id, accepted=len(metrics))


async def resolve_web_vitals(
    info: Info, page: str, since: dt.datetime, release: str | None = None
) -> list[WebVitalSummary]:
    require_staff(info.context.viewer, "read web vitals")
    rows = await fetch_web_vitals_summary(info.context.db, clean_page(page), since, release)
    return rows  # type: ignore[return-value]  # noqa: RET504 - rows are read through the type's fields


@strawberry.type
class WebVitalsMutation:
    report_web_vitals: ReportWebVitalsPayload = strawberry.mutation(
        resolver=resolve_report_web_vitals,
        description="Store real-user performance samples (also POST /api/analytics/web-vitals).",
    )
