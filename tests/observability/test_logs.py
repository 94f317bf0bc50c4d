"""JSON access lines, request ids, the slow-query log and the SQL comment seen from pg_stat_activity."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import orjson
import pytest

from mlc_graph.observability.logs import (
    ACCESS_LOGGER,
    TURN_BUFFER_CHARS,
    AccessRecord,
    JsonFormatter,
    JsonStreamHandler,
    flush_request_log,
    log_access,
    request_id_from,
)
from mlc_graph.platform.db import DbOptions, Executor, QueryStats
from mlc_graph.platform.sqlcomment import SLOW_LOGGER, build_comment, comment_for, normalize
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import (
    ROOT,
    app_client,
    bearer,
    free_port,
    http_settings,
    start_server,
    stop_server,
    wait_ready,
)

SELECT_OWN_QUERY = "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()"


def test_request_ids_are_accepted_when_plain_and_minted_otherwise() -> None:
    assert request_id_from("abc-123_x.y:z") == "abc-123_x.y:z"
    minted = {request_id_from(bad) for bad in (None, "", "a b", "x*/;DROP", "é", "a" * 129)}
    assert len(minted) == 6
    assert all(len(m) == 32 and m.isalnum() for m in minted)


def test_access_line_is_one_json_object_with_ids_and_figures_only() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.access")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_access(
            AccessRecord(
                request_id="r1", operation="Dash", operation_type="query", category="read", status=200,
                duration_ms=12.345, cost=42, stats=QueryStats(3, 0.0015), user_id=7, org_id=2, role="STUDENT",
                error_codes=("NOT_FOUND",),
            ),
            logger,
        )  # fmt: skip
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["msg"] == "request"
    assert {k: line[k] for k in ("request_id", "operation", "status", "cost", "sql_count", "user_id", "org_id")} == {
        "request_id": "r1", "operation": "Dash", "status": 200, "cost": 42, "sql_count": 3, "user_id": 7, "org_id": 2,
    }  # fmt: skip
    assert line["duration_ms"] == 12.35
    assert line["errors"] == ["NOT_FOUND"]
    assert not {"token", "authorization", "variables", "first_name", "email"} & set(line)


def test_comments_follow_sqlcommenter_and_cannot_close_early() -> None:
    assert build_comment("Dash") == " /*application='mlc-graph',operation='Dash'*/"
    assert build_comment("Dash", "r-1") == " /*application='mlc-graph',operation='Dash',request_id='r-1'*/"
    hostile = build_comment("x*/ DROP TABLE students; /*'", "r")
    assert hostile.count("*/") == 1 and hostile.endswith("*/")
    assert comment_for("off", "Dash", "r") == ""
    assert comment_for("operation", "Dash", "r") == build_comment("Dash")
    assert normalize("SELECT  1\n  FROM t" + build_comment("Dash", "r")) == "SELECT 1 FROM t"


async def test_sql_carries_the_operation_and_request_id_into_pg_stat_activity(clean_db: asyncpg.Pool) -> None:
    db = Executor(clean_db, QueryStats(), options=DbOptions(comment_mode="full"))
    db.tag("StudentDashboard", "req-42")
    seen = await db.fetchval(SELECT_OWN_QUERY)
    assert seen.endswith("/*application='mlc-graph',operation='StudentDashboard',request_id='req-42'*/")
    async with db.transaction() as tx:
        assert "request_id='req-42'" in await tx.fetchval(SELECT_OWN_QUERY)


async def test_default_comment_keeps_the_statement_cache_by_leaving_out_the_request_id(
    clean_db: asyncpg.Pool,
) -> None:
    db = Executor(clean_db, QueryStats())
    db.tag("StudentDashboard", "req-43")
    seen = await db.fetchval(SELECT_OWN_QUERY)
    assert seen.endswith("/*application='mlc-graph',operation='StudentDashboard'*/")


async def test_slow_statements_are_logged_with_redacted_parameters_and_counted(
    clean_db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    slow: list[str | None] = []
    db = Executor(clean_db, QueryStats(), options=DbOptions(slow_seconds=0.02, on_slow=slow.append))
    db.tag("ClassProgress", "req-7")
    with caplog.at_level(logging.WARNING, logger=SLOW_LOGGER):
        await db.fetchval("SELECT 1 FROM pg_sleep(0.05)\n WHERE $1::text <> 'x'", "secret-value")
        await db.fetchval("SELECT 2")  # fast: not logged
    records = [r for r in caplog.records if r.name == SLOW_LOGGER]
    assert len(records) == 1
    record = records[0].__dict__
    assert record["sql"] == "SELECT 1 FROM pg_sleep(0.05) WHERE $1::text <> 'x'"
    assert record["params"] == ["?"]
    assert "secret-value" not in str(record)
    assert (record["operation"], record["request_id"]) == ("ClassProgress", "req-7")
    assert record["duration_ms"] >= 20
    assert slow == ["ClassProgress"]


async def test_each_request_writes_one_access_line_with_its_request_id(
    database_url: str, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher_id = await factories.make_teacher(pool, org)
    auth = bearer("teacher", teacher_id, org)
    async with app_client(http_settings(database_url)) as client:
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            response = await client.post(
                "/graphql",
                json={"query": "query Me { viewer { teacher { displayName } } }"},
                headers={**auth, "X-Request-ID": "trace-abc.1"},
            )
    assert response.headers["X-Request-ID"] == "trace-abc.1"
    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 1
    line = orjson.loads(JsonFormatter().format(lines[0]))
    assert line["request_id"] == "trace-abc.1"
    assert (line["operation"], line["operation_type"], line["category"]) == ("Me", "query", "read")
    assert (line["status"], line["role"], line["user_id"], line["org_id"]) == (
        200,
        "TEACHER",
        teacher_id,
        org,
    )
    assert line["sql_count"] >= 1
    assert auth["Authorization"].split()[1] not in lines[0].getMessage() + str(line)


def test_access_line_written_straight_equals_the_formatted_record() -> None:
    """With one JSON stream handler (how `serve` sets logging up) the line is built without a LogRecord;
    it must read exactly like the record path's line. A filter on the way takes the record path."""
    record = AccessRecord(
        request_id="r2", operation="Student", operation_type="query", status=200, duration_ms=1.5, cost=1,
        stats=QueryStats(1, 0.0004), user_id=3, org_id=4, role="ADMIN",
    )  # fmt: skip
    parent = logging.getLogger("test.direct")
    parent.propagate = False
    stream = io.StringIO()
    handler = JsonStreamHandler(stream)
    formatter = JsonFormatter()
    handler.setFormatter(formatter)
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    child = logging.getLogger("test.direct.access")
    seen: list[logging.LogRecord] = []

    def keep(r: logging.LogRecord) -> bool:
        seen.append(r)
        return True

    try:
        log_access(record, child)
        child.addFilter(keep)
        log_access(record, child)
    finally:
        parent.removeHandler(handler)
        child.removeFilter(keep)
    direct, standard = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert len(seen) == 1  # only the second line was a LogRecord
    assert seen[0].getMessage() == "request" and seen[0].name == "test.direct.access"
    assert list(direct) == list(standard)
    assert {k: v for k, v in direct.items() if k != "ts"} == {k: v for k, v in standard.items() if k != "ts"}
    assert direct["logger"] == "test.direct.access" and direct["level"] == "info"
    assert direct["ts"].endswith("Z") and len(direct["ts"]) == len("2026-01-01T00:00:00.000Z")


class RecordingStream(io.StringIO):
    """A file that remembers each write and flush it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class FailingStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


@dataclass
class JsonLog:
    """A logger writing to a JsonStreamHandler of its own on a RecordingStream, as `serve` sets up."""

    logger: logging.Logger
    handler: JsonStreamHandler
    stream: RecordingStream

    def access(self, *numbers: int) -> None:
        for n in numbers:
            log_access(AccessRecord(request_id=f"turn-{n}", status=200, duration_ms=float(n)), self.logger)


@pytest.fixture
def json_log() -> Iterator[JsonLog]:
    # Made outside logging's registry: pytest adds its capture handler to every registered logger that
    # does not propagate, and with two handlers a line takes the record path.
    logger = logging.Logger("test.turns", logging.INFO)
    stream = RecordingStream()
    handler = JsonStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        yield JsonLog(logger, handler, stream)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _ids(text: str) -> list[str]:
    """Each line's request id (its message when it has none)."""
    lines = [orjson.loads(line) for line in text.splitlines()]
    return [line.get("request_id", line["msg"]) for line in lines]


def _turns(numbers: range) -> list[str]:
    return [f"turn-{n}" for n in numbers]


async def test_the_access_lines_of_one_loop_turn_are_one_write_and_one_flush(json_log: JsonLog) -> None:
    stream = json_log.stream
    json_log.access(*range(5))
    assert stream.writes == []  # nothing until the turn ends
    await asyncio.sleep(0)
    assert len(stream.writes) == 1 and stream.flushes == 1
    assert _ids(stream.writes[0]) == _turns(range(5))
    json_log.access(*range(5, 8))
    await asyncio.sleep(0)
    assert len(stream.writes) == 2 and stream.flushes == 2  # the next turn: its own write
    assert _ids(stream.getvalue()) == _turns(range(8))


async def test_other_records_keep_their_place_among_the_buffered_lines(json_log: JsonLog) -> None:
    json_log.access(1)
    json_log.logger.warning("between")
    json_log.access(2)
    await asyncio.sleep(0)
    assert _ids(json_log.stream.getvalue()) == ["turn-1", "between", "turn-2"]


async def test_a_turn_with_many_requests_writes_before_the_buffer_grows_past_its_bound(
    json_log: JsonLog,
) -> None:
    stream = json_log.stream
    json_log.access(*range(2000))  # about 100 characters each: three writes' worth
    assert len(stream.writes) >= 2  # some written within the turn
    assert all(len(text) <= TURN_BUFFER_CHARS + 200 for text in stream.writes)
    await asyncio.sleep(0)
    assert _ids(stream.getvalue()) == _turns(range(2000))


async def test_flush_writes_what_the_turn_has_buffered(json_log: JsonLog) -> None:
    json_log.access(1)
    flush_request_log(json_log.logger)
    assert _ids(json_log.stream.getvalue()) == ["turn-1"]
    await asyncio.sleep(0)
    assert _ids(json_log.stream.getvalue()) == ["turn-1"]  # written once


def test_without_a_running_loop_each_line_is_written_at_once(json_log: JsonLog) -> None:
    json_log.access(1)
    assert len(json_log.stream.writes) == 1 and json_log.stream.flushes == 1
    assert _ids(json_log.stream.getvalue()) == ["turn-1"]


async def test_a_failed_write_is_reported_by_logging_error_handling(
    json_log: JsonLog, capsys: pytest.CaptureFixture[str]
) -> None:
    json_log.handler.setStream(FailingStream())
    json_log.access(1, 2)
    await asyncio.sleep(0)
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "OSError: disk full" in err
    assert "2 request log lines not written" in err
    # Outside a loop the line takes the record path, whose failure logging reports the same way.
    await asyncio.to_thread(json_log.access, 3)
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "Message: 'request'" in err


EXIT_MID_TURN = """
import asyncio, sys
from mlc_graph.observability.logs import AccessRecord, configure_logging, log_access

async def main() -> None:
    for n in range(3):
        log_access(AccessRecord(request_id=f"exit-{n}"))
    sys.exit(0)  # out of the loop before the turn ends: the lines are still buffered

configure_logging("INFO", stream=sys.stdout)
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
"""


def test_lines_buffered_when_the_interpreter_exits_are_written() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_MID_TURN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert _ids(done.stdout) == ["exit-0", "exit-1", "exit-2"]


@pytest.mark.slow
async def test_a_server_process_writes_every_request_line_before_it_stops(database_url: str) -> None:
    port = free_port()
    process = start_server(database_url, port)
    ids = [f"served-{n}" for n in range(20)]
    try:
        await wait_ready(port, process)
        async with aiohttp.ClientSession() as session:

            async def ask(request_id: str) -> int:
                async with session.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": "{ __typename }"},
                    headers={"X-Request-ID": request_id},
                ) as response:
                    return response.status

            assert await asyncio.gather(*(ask(i) for i in ids)) == [200] * len(ids)
    finally:
        code, output = stop_server(process)
    assert code == 0, output
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    served = [line for line in access if line["request_id"].startswith("served-")]
    assert sorted(line["request_id"] for line in served) == sorted(ids)
    assert all((line["path"], line["status"]) == ("/graphql", 200) for line in served)
    # Written in the order they were logged: every access line before the shutdown notice.
    stopping = next(n for n, line in enumerate(lines) if line["msg"].startswith("shutting down"))
    assert max(n for n, line in enumerate(lines) if line["logger"] == ACCESS_LOGGER) < stopping
