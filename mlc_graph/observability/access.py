"""The request being served in this task, as its log line and metrics will describe it.

The HTTP middleware opens an `AccessRecord` for each request; the admission pipeline's route stage and
the cost finisher fill in what only they know (operation, category, caller, database target, cost).
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from graphql import FieldNode, OperationDefinitionNode, OperationType

from mlc_graph.observability.logs import AccessRecord

# Top-level fields whose queries are reports (aggregations over a class): the "report" category, with the
# longer statement timeout and the 3 s SLO.
REPORT_FIELDS = frozenset({"classProgress"})

_current: ContextVar[AccessRecord | None] = ContextVar("mlc_access_record", default=None)


def category_of(operation: OperationDefinitionNode) -> str:
    """read, write, report or realtime: the SLO category of an operation."""
    if operation.operation is OperationType.MUTATION:
        return "write"
    if operation.operation is OperationType.SUBSCRIPTION:
        return "realtime"
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode) and selection.name.value in REPORT_FIELDS:
            return "report"
    return "read"


def current_record() -> AccessRecord | None:
    return _current.get()


def open_record(record: AccessRecord) -> Token[AccessRecord | None]:
    return _current.set(record)


def close_record(token: Token[AccessRecord | None]) -> None:
    _current.reset(token)
