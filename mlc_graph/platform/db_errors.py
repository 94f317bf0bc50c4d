"""Database integrity errors become client errors with a code, at the one boundary the write path crosses.

    asyncpg.UniqueViolationError      (23505) -> ConflictError       CONFLICT
    asyncpg.ForeignKeyViolationError  (23503) -> NotFoundError       NOT_FOUND
    asyncpg.CheckViolationError       (23514) -> BadUserInputError   BAD_USER_INPUT
    asyncpg.NotNullViolationError     (23502) -> BadUserInputError   BAD_USER_INPUT
    asyncpg.DataError                 (22xxx) -> BadUserInputError   BAD_USER_INPUT

Text the database cannot store (U+0000 in a text parameter, 22021; in JSON, 22P05) is the client's
mistake on every path, reads included: `Executor` itself raises `unstorable_text` for it, so a read
argument holding NUL answers BAD_USER_INPUT, never INTERNAL_SERVER_ERROR.

The write path validates first, so these are the backstop for races and for rules only the database
can see (a row deleted meanwhile, a username taken between check and insert). The messages name no
table, column or constraint: those are internals, and the server log keeps the original.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from mlc_graph.platform.errors import ApiError, BadUserInputError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

_MAPPING: tuple[tuple[type[asyncpg.PostgresError], type[ApiError], str], ...] = (
    (asyncpg.UniqueViolationError, ConflictError, "This conflicts with data that already exists"),
    (asyncpg.ForeignKeyViolationError, NotFoundError, "Something this refers to does not exist"),
    (asyncpg.CheckViolationError, BadUserInputError, "A value is outside what is allowed"),
    (asyncpg.NotNullViolationError, BadUserInputError, "A required value is missing"),
    (asyncpg.DataError, BadUserInputError, "A value has the wrong form or size"),
)


UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)


def unstorable_text(exc: asyncpg.PostgresError) -> BadUserInputError:
    """The refusal of a value PostgreSQL text cannot hold, whichever statement it reached."""
    return BadUserInputError(
        "A text value holds a character that cannot be stored (such as NUL, U+0000)", sqlstate=exc.sqlstate
    )


def translate(exc: asyncpg.PostgresError) -> ApiError | None:
    """The client error for a database error, or None when it is not the client's to fix."""
    for db_error, api_error, message in _MAPPING:
        if isinstance(exc, db_error):
            return api_error(message, sqlstate=exc.sqlstate)
    return None


@asynccontextmanager
async def client_errors() -> AsyncIterator[None]:
    """Wrap a transaction: integrity and data errors leave as coded errors; anything else propagates."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        api_error = translate(exc)
        if api_error is None:
            raise
        log.info("write refused by the database: %s", exc.as_dict())
        raise api_error from exc
