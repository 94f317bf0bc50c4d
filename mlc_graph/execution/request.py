"""One operation on its way through admission and execution: what the transport knows, what stages add."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import DocumentNode, ExecutionResult, OperationDefinitionNode

from mlc_graph.execution.cache_policy import CachePolicy
from mlc_graph.guards.cost import CostAnalysis
from resolvers.context import Context


@dataclass(slots=True)
class GraphQLParams:
    """The four members of a GraphQL request, already type-checked by the transport."""

    query: str | None
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    extensions: dict[str, Any] | None = None


class Transport(enum.Enum):
    """How the operation arrived; stages that differ by transport read it (GET may not mutate, ...)."""

    HTTP = "http"
    BATCH = "batch"  # one operation of a batched HTTP POST
    WEBSOCKET = "websocket"


@dataclass(frozen=True, slots=True)
class Price:
    """What the cost stage found: the analysis, and the budget it was checked against."""

    analysis: CostAnalysis
    budget: int

    @property
    def requested(self) -> int:
        return self.analysis.requested


@dataclass(slots=True)
class OperationRequest:
    """Filled in by the admission stages in order (mlc_graph.execution.stages names who fills what)."""

    params: GraphQLParams
    context: Context
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: Transport = Transport.HTTP
    document: DocumentNode | None = None
    operation: OperationDefinitionNode | None = None
    introspection_only: bool = False
    price: Price | None = None
    # The document's cache policy, for GET queries over HTTP only (every other answer is no-store).
    cache: CachePolicy | None = None
    # Set by a stage that answers in place of execution (the cost dry run), else by execution.
    result: ExecutionResult | None = None

    def answer_policy(self) -> CachePolicy | None:
        """The cache policy of the answer: the document's, when the operation ran and raised no error
        (an error may be transient or the caller's own; a dry run answers no data)."""
        result = self.result
        if self.cache is None or result is None or result.errors or result.data is None:
            return None
        return self.cache


@dataclass(slots=True)
class Outcome:
    """What a transport turns into its response: the body, the statuses and headers for HTTP."""

    body: dict[str, Any]
    status: int = 200
    legacy_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    cache: CachePolicy | None = None  # None: no-store
