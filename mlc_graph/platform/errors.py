"""Every error the server raises for a client, and the one function that builds a refusal body.

    Exception
    ├── ApiError(GraphQLError)          a GraphQL error with `extensions.code`; raised in resolvers and
    │   │                               stages, shown to the client as it is
    │   ├── UnauthenticatedError        UNAUTHENTICATED
    │   │   └── SessionEndedError       UNAUTHENTICATED (HTTP 401): the token's session was ended
    │   ├── ForbiddenError              FORBIDDEN
    │   ├── NotFoundError               NOT_FOUND (also what other organizations' data reads as)
    │   ├── BadUserInputError           BAD_USER_INPUT
    │   ├── ConflictError               CONFLICT
    │   ├── QuotaExceededError          QUOTA_EXCEEDED (a tier's cap: students, seats)
    │   ├── SyncTokenExpiredError       SYNC_TOKEN_EXPIRED (delta sync: older than the history kept; refetch)
    │   ├── RateLimitedError            RATE_LIMITED (HTTP 429): requests or cost points per hour
    │   ├── SessionLimitError           SESSION_LIMIT (HTTP 429): the tier's concurrent sessions
    │   ├── QueryTooComplexError        QUERY_TOO_COMPLEX: over the per-operation cost budget
    │   └── ServiceUnavailableError     SERVICE_UNAVAILABLE
    │       └── DatabaseUnavailableError  no connection in time, or the database is down
    ├── CostValidationError(GraphQLError)  GRAPHQL_VALIDATION_FAILED: a document that cannot be priced
    ├── AuthError                       the credentials were refused (the view answers 401)
    ├── BadRequest                      the HTTP request itself is malformed (its own status: 400, 413, 415)
    └── Refusal                         an admission stage refuses the operation: its GraphQL errors, the
                                        HTTP status, the legacy (application/json) status and headers

Anything else raised while serving is a bug: masked as INTERNAL_SERVER_ERROR with the request id and
logged (mlc_graph.execution.masking). `refusal_body` is the only place a refusal's JSON is built: the HTTP
view, each operation of a batch and the WebSocket `error` message all use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from graphql import GraphQLError


class ApiError(GraphQLError):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"
    # The HTTP status when this error refuses a whole request (429 for quotas); 400 otherwise.
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **details})


class UnauthenticatedError(ApiError):
    code = "UNAUTHENTICATED"
    http_status = 401


class SessionEndedError(UnauthenticatedError):
    """The token's session was ended (endSession); sign in again for a new one."""


class ForbiddenError(ApiError):
    code = "FORBIDDEN"


class NotFoundError(ApiError):
    code = "NOT_FOUND"


class BadUserInputError(ApiError):
    code = "BAD_USER_INPUT"


class ConflictError(ApiError):
    code = "CONFLICT"


class QuotaExceededError(ApiError):
    code = "QUOTA_EXCEEDED"


class SyncTokenExpiredError(ApiError):
    code = "SYNC_TOKEN_EXPIRED"


class RateLimitedError(ApiError):
    """Over the tier's requests or cost points for the hour; HTTP 429 with Retry-After."""

    code = "RATE_LIMITED"
    http_status = 429


class SessionLimitError(ApiError):
    """The organization already has its tier's number of active sessions."""

    code = "SESSION_LIMIT"
    http_status = 429


class QueryTooComplexError(ApiError):
    code = "QUERY_TOO_COMPLEX"


class ServiceUnavailableError(ApiError):
    code = "SERVICE_UNAVAILABLE"
    http_status = 503


class DatabaseUnavailableError(ServiceUnavailableError):
    """No connection could be had in time (pool exhausted or server down), or a statement timed out."""


class CostValidationError(GraphQLError):
    """The document cannot be priced (a fragment cycle): reported like any validation error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "GRAPHQL_VALIDATION_FAILED"})


class AuthError(Exception):
    """The request's credentials were refused; the message is safe to show the client."""


class BadRequest(Exception):  # noqa: N818 - it is the HTTP status's name
    """The HTTP request itself is malformed; refused before any GraphQL work, with its own status."""

    def __init__(self, message: str, code: str = "BAD_REQUEST", status: int = 400, **headers: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.headers = headers

    def errors(self) -> list[GraphQLError]:
        return [request_error(self.message, self.code)]


class Refusal(Exception):  # noqa: N818 - a refusal, not a bug: it is the expected outcome
    """An admission stage refuses the operation before (or instead of) execution.

    `status` applies to `application/graphql-response+json`; `legacy_status` to `application/json`, where
    the GraphQL-over-HTTP spec asks for 200 on GraphQL request errors (parse, validation, budgets).
    """

    def __init__(
        self,
        errors: GraphQLError | Iterable[GraphQLError],
        status: int = 400,
        legacy_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.errors = [errors] if isinstance(errors, GraphQLError) else list(errors)
        super().__init__(self.errors[0].message if self.errors else "refused")
        self.status = status
        self.legacy_status = (
            legacy_status if legacy_status is not None else (200 if status == 400 else status)
        )
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, error: ApiError, headers: Mapping[str, str] | None = None) -> Refusal:
        """A whole-request refusal by one ApiError, with the HTTP status its class names."""
        status = error.http_status
        return cls(error, status=status, legacy_status=200 if status == 400 else status, headers=headers)


def request_error(message: str, code: str, **details: Any) -> GraphQLError:
    """A GraphQL request error (no path) carrying `extensions.code`."""
    return GraphQLError(message, extensions={"code": code, **details})


def refusal_body(errors: GraphQLError | Iterable[GraphQLError]) -> dict[str, Any]:
    """The JSON of a refused operation: `{"errors": [...]}` with no `data` (the spec's request error)."""
    items = [errors] if isinstance(errors, GraphQLError) else errors
    return {"errors": [error.formatted for error in items]}
