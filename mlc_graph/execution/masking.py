"""What a client may see of an error: GraphQL's own and ApiErrors as they are, anything else masked.

A masked error keeps its path and locations but says only INTERNAL_SERVER_ERROR (or SERVICE_UNAVAILABLE
for a database that is down) with the request id; the original is logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from mlc_graph.execution.request import Outcome
from mlc_graph.platform.errors import DatabaseUnavailableError, refusal_body, request_error

log = logging.getLogger(__name__)


def client_error(error: GraphQLError, request_id: str) -> dict[str, Any]:
    """The error as the client may see it: GraphQL's own and ApiErrors as they are, anything else masked."""
    original = error.original_error
    # The database's own text may name hosts or timeouts (internals): it gets a fixed message below.
    if original is None or (
        isinstance(original, GraphQLError) and not isinstance(original, DatabaseUnavailableError)
    ):
        formatted = error.formatted
        extensions = formatted.get("extensions")
        if not extensions or "code" not in extensions:
            # Without an original error this is graphql-core's own verdict: a bad variable before execution,
            # or a null in a non-null field during it (a server bug, but its message is safe).
            code = "BAD_USER_INPUT" if error.path is None or original is not None else "INTERNAL_SERVER_ERROR"
            formatted["extensions"] = {**(extensions or {}), "code": code}
        return dict(formatted)
    if isinstance(original, DatabaseUnavailableError):
        code, message = "SERVICE_UNAVAILABLE", "The database is unavailable; retry shortly"
    else:
        log.error(
            "resolver failed at %s",
            error.path,
            exc_info=original,
            extra={"request_id": request_id},
        )
        code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
    masked = GraphQLError(
        message,
        error.nodes,
        error.source,
        error.positions,
        error.path,
        extensions={"code": code, "requestId": request_id},
    )
    return dict(masked.formatted)


def whole_response_unavailable(data: dict[str, Any] | None, errors: list[dict[str, Any]]) -> bool:
    if data is not None and any(value is not None for value in data.values()):
        return False
    return any(e.get("extensions", {}).get("code") == "SERVICE_UNAVAILABLE" for e in errors)


def unavailable() -> Outcome:
    error = request_error("The database is unavailable; retry shortly", "SERVICE_UNAVAILABLE")
    return Outcome(refusal_body(error), 503, 503, {"Retry-After": "1"})
