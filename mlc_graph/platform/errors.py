"""Errors that clients can switch on: each carries `extensions.code`.

Hierarchy:
    ApiError                      (code in .code, safe message)
    ├── UnauthenticatedError      UNAUTHENTICATED
    ├── ForbiddenError            FORBIDDEN
    ├── NotFoundError             NOT_FOUND (also what other organizations' data reads as)
    ├── BadUserInputError         BAD_USER_INPUT
    ├── ConflictError             CONFLICT
    ├── QuotaExceededError        QUOTA_EXCEEDED
    ├── SyncTokenExpiredError     SYNC_TOKEN_EXPIRED (delta sync: older than the history kept; refetch)
    └── ServiceUnavailableError   SERVICE_UNAVAILABLE
Anything else raised in a resolver is masked as INTERNAL_SERVER_ERROR and logged with the request id.
"""

from __future__ import annotations

from typing import Any, ClassVar

from graphql import GraphQLError


class ApiError(GraphQLError):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **details})


class UnauthenticatedError(ApiError):
    code = "UNAUTHENTICATED"


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


class ServiceUnavailableError(ApiError):
    code = "SERVICE_UNAVAILABLE"
