"""The cost check as pipeline stages: price before execution, report requested and actual cost after.

Headers: `X-Cost-Include-Fields: true` adds a per-field breakdown to `extensions.cost`;
`X-Cost-Dry-Run: true` (or `extensions.dryRun: true` in the body) prices without executing.
The budget is `settings.cost_budget` unless something (the tiers) replaces `CostStage.budget_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from graphql import ExecutionResult, GraphQLError

from mlc_graph.execution.pipeline import MAX_CACHED_DOCUMENT_CHARS, PreparedRequest, RequestRefused
from mlc_graph.guards.cost.analyzer import CostAnalysis, CostAnalyzer
from mlc_graph.keys import PIPELINE, SETTINGS

INCLUDE_FIELDS_HEADER = "X-Cost-Include-Fields"
DRY_RUN_HEADER = "X-Cost-Dry-Run"
# Between the stages the analysis waits under this key of `context.extensions`; the after stage
# replaces it with the JSON `extensions.cost`.
EXTENSION = "cost"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True, slots=True)
class Priced:
    """What the before stage leaves for the after stage."""

    analysis: CostAnalysis
    budget: int


def requested_cost(req: PreparedRequest) -> int | None:
    """The price of the request once the cost stage ran (for quotas that charge cost points)."""
    value = req.context.extensions.get(EXTENSION)
    if isinstance(value, Priced):
        return value.analysis.requested
    if isinstance(value, dict):
        requested = value.get("requestedQueryCost")
        return requested if isinstance(requested, int) else None
    return None


class CostStage:
    """One per app: holds the analyzer (weight table and cache) built once for the schema."""

    def __init__(self, analyzer: CostAnalyzer, default_budget: int) -> None:
        self.analyzer = analyzer
        self.default_budget = default_budget
        self.budget_for: Callable[[PreparedRequest], int] = lambda _req: self.default_budget

    def before(self, req: PreparedRequest) -> None:
        assert req.document is not None
        params = req.params
        try:
            # Documents the pipeline does not cache are not cached here either: no pinning megabytes.
            text = params.query
            key = text if text is not None and len(text) <= MAX_CACHED_DOCUMENT_CHARS else None
            analysis = self.analyzer.analyze(req.document, params.variables, params.operation_name, key)
        except GraphQLError as error:
            raise RequestRefused(error) from error
        budget = self.budget_for(req)
        try:
            analysis.check(budget)
        except GraphQLError as error:
            raise RequestRefused(error) from error
        req.context.extensions[EXTENSION] = Priced(analysis, budget)
        if _truthy(req.headers.get(DRY_RUN_HEADER)) or (params.extensions or {}).get("dryRun") is True:
            req.result = ExecutionResult(data=None)  # the pipeline skips execution when a result is set

    def after(self, req: PreparedRequest) -> None:
        priced = req.context.extensions.get(EXTENSION)
        if not isinstance(priced, Priced):
            return
        data: Any = req.result.data if req.result is not None else None
        include = _truthy(req.headers.get(INCLUDE_FIELDS_HEADER))
        req.context.extensions[EXTENSION] = priced.analysis.extension(data, priced.budget, include)


COST = web.AppKey("cost", CostStage)


def install(app: web.Application) -> None:
    """App feature: price every operation after authentication, report its cost after execution."""
    settings = app[SETTINGS]
    pipeline = app[PIPELINE]
    stage = CostStage(
        CostAnalyzer(pipeline.schema, cache_size=settings.document_cache_size), settings.cost_budget
    )
    app[COST] = stage
    pipeline.stages.before_execute.append(stage.before)
    pipeline.stages.after_execute.insert(0, stage.after)
