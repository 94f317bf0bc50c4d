"""Web-vitals samples: what is accepted, and how each is rated (shared by the HTTP endpoint and GraphQL).

Bounded on purpose, since anyone can send these: known metric names only, values within what a browser
can plausibly measure, short strings, at most MAX_BATCH samples per request. The rating is recomputed
from the published Core Web Vitals thresholds (the web-vitals library's own), so a report aggregates
consistently whatever the client claimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BATCH = 50
MAX_BODY_BYTES = 64 * 1024
MAX_PAGE_LENGTH = 200
MAX_RELEASE_LENGTH = 64
MAX_ID_LENGTH = 128
MAX_NAVIGATION_TYPE_LENGTH = 32
RATINGS = ("good", "needs-improvement", "poor")
# (good up to, needs improvement up to, largest value accepted): milliseconds except CLS (unitless).
THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "LCP": (2500, 4000, 600_000),
    "INP": (200, 500, 600_000),
    "FID": (100, 300, 600_000),
    "CLS": (0.1, 0.25, 100),
    "FCP": (1800, 3000, 600_000),
    "TTFB": (800, 1800, 600_000),
}


class InvalidMetric(ValueError):  # noqa: N818 - reads as what it is: "raise InvalidMetric(...)"
    """A sample or batch is refused; the message says which one and why."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    value: float
    rating: str
    metric_id: str
    page: str
    release: str
    navigation_type: str | None


def rate(name: str, value: float) -> str:
    good, poor_above, _ = THRESHOLDS[name]
    if value <= good:
        return "good"
    return "needs-improvement" if value <= poor_above else "poor"


def clean_page(page: str) -> str:
    """The path only: query strings and fragments can carry personal data and explode cardinality."""
    path = page.split("?", 1)[0].split("#", 1)[0].strip() or "/"
    return path[:MAX_PAGE_LENGTH]


def _text(sample: Mapping[str, Any], key: str, limit: int, index: int, required: bool = False) -> str | None:
    value = sample.get(key)
    if value is None or value == "":
        if required:
            raise InvalidMetric(f"metric {index}: '{key}' is required")
        return None
    if not isinstance(value, str):
        raise InvalidMetric(f"metric {index}: '{key}' must be a string")
    if len(value) > limit:
        raise InvalidMetric(f"metric {index}: '{key}' is longer than {limit} characters")
    return value


def metric_from(sample: Any, index: int = 0, default_page: str = "/", default_release: str = "") -> Metric:
    """One validated sample from a decoded JSON object (the web-vitals library's Metric shape)."""
    if not isinstance(sample, dict):
        raise InvalidMetric(f"metric {index}: must be a JSON object")
    name = sample.get("name")
    if name not in THRESHOLDS:
        raise InvalidMetric(f"metric {index}: unknown name {name!r}; known: {', '.join(THRESHOLDS)}")
    value = sample.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidMetric(f"metric {index}: 'value' must be a number")
    ceiling = THRESHOLDS[name][2]
    if not 0 <= value <= ceiling:  # also refuses NaN
        raise InvalidMetric(f"metric {index}: {name} value {value} is outside 0..{ceiling:g}")
    rating = sample.get("rating")
    if rating is not None and rating not in RATINGS:
        raise InvalidMetric(f"metric {index}: 'rating' must be one of {', '.join(RATINGS)}")
    metric_id = _text(sample, "id", MAX_ID_LENGTH, index, required=True)
    assert metric_id is not None
    page = _text(sample, "page", 2048, index)
    release = _text(sample, "release", MAX_RELEASE_LENGTH, index)
    return Metric(
        name=name,
        value=float(value),
        rating=rate(name, float(value)),
        metric_id=metric_id,
        page=clean_page(page) if page is not None else clean_page(default_page),
        release=release if release is not None else default_release[:MAX_RELEASE_LENGTH],
        navigation_type=_text(sample, "navigationType", MAX_NAVIGATION_TYPE_LENGTH, index),
    )


def metrics_from(payload: Any, default_page: str = "/", default_release: str = "") -> list[Metric]:
    """A batch: one sample object or a list of 1..MAX_BATCH of them; the latest report of an id wins."""
    samples = payload if isinstance(payload, list) else [payload]
    if not samples:
        raise InvalidMetric("no metrics in the batch")
    if len(samples) > MAX_BATCH:
        raise InvalidMetric(f"a batch may hold at most {MAX_BATCH} metrics, got {len(samples)}")
    latest: dict[tuple[str, str], Metric] = {}
    for index, sample in enumerate(samples):
        metric = metric_from(sample, index, default_page, default_release)
        latest[(metric.metric_id, metric.name)] = metric
    return list(latest.values())
