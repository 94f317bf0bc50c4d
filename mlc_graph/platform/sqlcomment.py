"""sqlcommenter-style SQL comments and the slow-query log.

Every statement a request runs ends with `/*application='mlc-graph',operation='X',request_id='Y'*/` so
`pg_stat_activity` and PostgreSQL's own logs show which GraphQL operation runs what. The comment is built
once per request and appended with one string concatenation per statement.

asyncpg caches prepared statements by query text, so a comment that differs per request makes every
statement a fresh prepare. MLC_SQL_COMMENT chooses: "full" (operation and request id: each request
prepares its statements anew, which costs a round trip per statement), "operation" (the default: the
text varies only by operation name, so the statement cache keeps working), or "off".
Behind PgBouncer in transaction mode the statement cache is off anyway, so "full" costs nothing more there.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

SLOW_LOGGER = "mlc_graph.slow_query"
COMMENT_MODES = ("off", "operation", "full")
APPLICATION = "mlc-graph"
# Cached comments per operation name, bounded because operation names come from clients.
_MAX_CACHED = 512
_cache: dict[str | None, str] = {}


def _value(raw: str) -> str:
    # sqlcommenter: URL-encode the value, then escape single quotes; '*' and '/' are encoded too, so a
    # value can never close the comment early.
    return "'" + quote(raw, safe="").replace("'", "\\'") + "'"


def build_comment(operation: str | None, request_id: str | None = None) -> str:
    """The comment for one request (keys sorted, as sqlcommenter specifies); a leading space included."""
    if request_id is None:
        cached = _cache.get(operation)
        if cached is not None:
            return cached
    parts = [f"application={_value(APPLICATION)}"]
    if operation:
        parts.append(f"operation={_value(operation)}")
    if request_id:
        parts.append(f"request_id={_value(request_id)}")
    comment = " /*" + ",".join(parts) + "*/"
    if request_id is None and len(_cache) < _MAX_CACHED:
        _cache[operation] = comment
    return comment


def comment_for(mode: str, operation: str | None, request_id: str) -> str:
    if mode == "off":
        return ""
    if mode == "full":
        return build_comment(operation, request_id)
    return build_comment(operation)


def normalize(sql: str) -> str:
    """Whitespace-collapsed statement text with our comment stripped (slow path only)."""
    head, sep, tail = sql.rpartition(" /*application=")
    text = head if sep and tail.endswith("*/") else sql
    return " ".join(text.split())


def log_slow_query(
    sql: str,
    arg_count: int,
    seconds: float,
    operation: str | None,
    request_id: str,
    logger: logging.Logger | None = None,
) -> None:
    """Log a statement that took longer than the threshold. Parameters are never logged, only counted."""
    (logger or logging.getLogger(SLOW_LOGGER)).warning(
        "slow query",
        extra={
            "sql": normalize(sql),
            "params": ["?"] * arg_count,
            "duration_ms": round(seconds * 1000, 2),
            "operation": operation,
            "request_id": request_id,
        },
    )
