"""Structured JSON logs: one line per request on `mlc_graph.access`, everything else as JSON lines too.

Access lines carry ids and figures only (request id, operation, duration, status, cost, SQL count, user and
organization ids); never tokens, names, emails or query variables.

The access lines of one event-loop turn reach the stream in one write and one flush (issue 11: a write
syscall per request was 5 % of the smallest request's samples): `JsonStreamHandler` buffers them and
writes them at the end of the turn, before any other record it writes, when the buffer passes
`TURN_BUFFER_CHARS`, and on every `flush()` (the app's cleanup, `logging.shutdown` at exit). Without a
running loop a line is written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from mlc_graph.platform.db import QueryStats

ACCESS_LOGGER = "mlc_graph.access"
ACCESS_MESSAGE = "request"
# The LogRecord attribute carrying an access line's fields.
FIELDS = "mlc_fields"
REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128
# Past this many characters of buffered access lines they are written at once, so a turn that finishes
# thousands of requests does not build one huge string.
TURN_BUFFER_CHARS = 64 * 1024
# Characters a caller-supplied request id may use; anything else and we mint our own (the id ends up in
# logs and SQL comments, so it must not carry quotes, newlines or comment terminators).
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
# LogRecord attributes that are plumbing, not payload.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
}


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID when it is short and plain, else a fresh one."""
    if header and len(header) <= _MAX_REQUEST_ID and _ID_CHARS.issuperset(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and whatever `extra=` added."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        # Formatting a datetime costs more than the rest of an access line: do it once per second.
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def access_line(self, logger: str, fields: dict[str, Any], created: float) -> str:
        """What `format` writes for an access record of `logger` with these fields, built without one."""
        payload: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": "info",
            "logger": logger,
            "msg": ACCESS_MESSAGE,
        }
        payload.update(fields)
        return orjson.dumps(payload, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get(FIELDS)
        if isinstance(fields, dict):
            payload.update(fields)  # access lines: their fields in one attribute, no scan of the record
        else:
            for key, value in record.__dict__.items():
                if key not in _RECORD_FIELDS and not key.startswith("_"):
                    payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class JsonStreamHandler(logging.StreamHandler[Any]):
    """The handler `configure_logging` installs: a StreamHandler that writes the access lines of one
    event-loop turn together (`write_access`), ahead of any record it emits, so the stream keeps the
    order in which things were logged. Its stream must have `flush()`, as every file does."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._buffer = io.StringIO()
        self._buffered = 0  # characters in the buffer
        # The loop a write is scheduled on: another loop (or one closed before its callbacks ran) gets
        # its own, so a line never waits for a turn that will not come.
        self._drain_loop: asyncio.AbstractEventLoop | None = None

    def write_access(self, formatter: JsonFormatter, logger: str, fields: dict[str, Any]) -> bool:
        """Write an access line of `logger`: at the end of this loop turn when a loop runs, else now.
        False when writing now failed (the caller then takes the standard path, which reports it)."""
        text = formatter.access_line(logger, fields, time.time()) + self.terminator
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock or contextlib.nullcontext():
            if loop is None:
                if self._buffered:  # left by a loop that stopped before its turn ended
                    self._drain()
                try:
                    self.stream.write(text)
                    self.stream.flush()
                except Exception:
                    return False
                return True
            self._buffered += self._buffer.write(text)
            if self._buffered > TURN_BUFFER_CHARS:
                self._drain()
            elif self._drain_loop is not loop:
                self._drain_loop = loop
                loop.call_soon(self._drain)
        return True

    def _drain(self) -> None:
        """Write the buffered lines in one write, then flush (at the end of a turn, or before anything
        else is written)."""
        with self.lock or contextlib.nullcontext():
            self._drain_loop = None
            if not self._buffered:
                return
            text = self._buffer.getvalue()
            # Emptied first: lines whose write fails are reported once, not tried again with the next.
            self._buffer = io.StringIO()
            self._buffered = 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:
                # What the record path does when its write fails: logging's handleError reports it (on
                # stderr, when logging.raiseExceptions is set).
                lost = f"{text.count(self.terminator)} request log lines not written"
                self.handleError(logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, lost, (), None))

    def emit(self, record: logging.LogRecord) -> None:
        if self._buffered:  # the access lines logged before this record go first
            self._drain()
        super().emit(record)

    def flush(self) -> None:
        if self._buffered:
            self._drain()
        else:
            super().flush()


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route all logging through one JSON handler (called by the server at start, never at import)."""
    handler = JsonStreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())


@dataclass(slots=True)
class AccessRecord:
    """What one request did, filled in by the view and written once when the response is ready."""

    request_id: str
    method: str = "POST"
    path: str = "/graphql"
    operation: str | None = None
    operation_type: str | None = None
    category: str = "read"
    status: int = 200
    duration_ms: float = 0.0
    cost: int | None = None
    # The request's statement counter, read when the line is written (it keeps counting until then).
    stats: QueryStats | None = None
    user_id: int | None = None
    org_id: int | None = None
    role: str | None = None
    # None until known: the GraphQL view notes them from the answer it built (access.note_answer); for any
    # other response the observe middleware reads them from the body sent.
    error_codes: tuple[str, ...] | None = None
    db_target: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 2),
        }
        if self.operation_type is not None:
            out["operation"] = self.operation
            out["operation_type"] = self.operation_type
            out["category"] = self.category
            out["cost"] = self.cost
            if self.stats is not None:
                out["sql_count"] = self.stats.statements
                out["sql_ms"] = round(self.stats.seconds * 1000, 2)
        if self.role is not None:
            out["role"] = self.role
            out["user_id"] = self.user_id
            out["org_id"] = self.org_id
        if self.error_codes:
            out["errors"] = list(self.error_codes)
        if self.db_target is not None:
            out["db"] = self.db_target
        return out


def _direct_handler(log: logging.Logger) -> tuple[JsonStreamHandler, JsonFormatter] | None:
    """The one handler an INFO record of `log` would reach, and its formatter, when writing to it
    straight is the same: no filters on the way, and a JsonStreamHandler at INFO or below formatting
    with JsonFormatter."""
    found: logging.Handler | None = None
    current: logging.Logger | None = log
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if (
        type(found) is JsonStreamHandler
        and not found.filters
        and found.level <= logging.INFO
        and isinstance(found.formatter, JsonFormatter)
    ):
        return found, found.formatter
    return None


def log_access(record: AccessRecord, logger: logging.Logger | None = None) -> None:
    """Write the request's single access line.

    When the line goes to one JsonStreamHandler (how `serve` configures logging), it is built and handed
    to it straight, to be written with the rest of the loop turn's lines: no LogRecord, no filter checks,
    no walk of the handlers (issue 11). Anything else (several handlers, filters, pytest's caplog) takes
    the standard path and sees a normal record."""
    log = logger or logging.getLogger(ACCESS_LOGGER)
    if not log.isEnabledFor(logging.INFO):
        return
    direct = _direct_handler(log)
    if direct is not None and direct[0].write_access(direct[1], log.name, record.fields()):
        return
    # makeRecord + handle rather than log.info: skips the caller lookup (a stack walk per request),
    # which an access line does not need: its logger name says where it comes from.
    made = log.makeRecord(
        log.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, (), None, extra={FIELDS: record.fields()}
    )
    log.handle(made)


def flush_request_log(logger: logging.Logger | None = None) -> None:
    """Write the access lines still buffered for this loop turn (the app's cleanup calls it)."""
    direct = _direct_handler(logger or logging.getLogger(ACCESS_LOGGER))
    if direct is not None:
        direct[0].flush()
