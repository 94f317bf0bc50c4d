"""The request being served in this task, as its log line and metrics will describe it.

The HTTP middleware opens an `AccessRecord` for each request; the admission pipeline's route stage and
the cost finisher fill in what only they know (operation, category, caller, database target, cost), and
the GraphQL view the error codes of the answer it built (`note_answer`), so they are not searched for in
the bytes sent (issue 11).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

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


def error_codes_of(payload: Any) -> tuple[str, ...]:
    """The `extensions.code` of each error of a GraphQL answer (of every item in order for a batch's list),
    "UNKNOWN" for an error without a string code."""
    items = payload if isinstance(payload, list) else [payload]
    codes: list[str] = []
    for item in items:
        for error in (item.get("errors") or []) if isinstance(item, dict) else []:
            extensions = error.get("extensions") if isinstance(error, dict) else None
            code = extensions.get("code") if isinstance(extensions, dict) else None
            codes.append(code if isinstance(code, str) else "UNKNOWN")
    return tuple(codes)


def note_answer(payload: Any) -> None:
    """The answer the view sends (before serialization): its error codes go on the request's record."""
    record = _current.get()
    if record is not None:
        record.error_codes = error_codes_of(payload)


def current_record() -> AccessRecord | None:
    return _current.get()


def open_record(record: AccessRecord) -> Token[AccessRecord | None]:
    return _current.set(record)


def close_record(token: Token[AccessRecord | None]) -> None:
    _current.reset(token)
