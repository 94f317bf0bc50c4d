"""`python -m bench.budget` (`make perf-budget`): the CI performance budget, a deterministic cost per request.

Wall-clock figures move by tens of per cent on a shared machine, and `perf stat -e instructions` is not
supported here (no hardware counters in this VM), so the budget counts what the server does instead of
timing it: over a fixed sequence of requests per workload (W1-W4 of bench/workloads.py, drawn with a
fixed seed from the demo seed, itself anchored at a fixed date), sent over HTTP to the real app on the
real PostgreSQL and Redis, in the production configuration (Redis admission, request log, metrics), it
counts

- calls: every Python function call and every call of a C function (`sys.setprofile`'s `call` and
  `c_call` events) made by the server's code: mlc_graph/, resolvers/, loaders/ and the libraries
  serving the request (aiohttp, graphql-core, Strawberry, asyncpg's Python layer, redis-py,
  prometheus-client, logging). The event loop, selectors and sockets are left out: how often the
  loop spins depends on timing, not on the code. The client is raw asyncio streams, also left out.
- statements: SQL statements per request (the answers' `extensions.sqlStatements`).

Each workload's sequence is sent once to warm every cache (plans, documents, verified tokens, boards)
and then once more under the profiler. `bench/perf_budget.json` holds the budget; the check fails when a
workload's calls per request exceed it by more than the margin stated there, or its statements per
request exceed the budget's at all, and prints budget and measured side by side. `--update` rewrites
the file from the current code (commit it with the change that justifies it).
"""

from __future__ import annotations

import argparse
import asyncio
import dis
import logging
import os
import random
import sys
import sysconfig
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from redis.asyncio import Redis

from bench.load import sql_statements_in_body
from bench.workloads import WORKLOADS, Dataset, Workload, load_dataset
from mlc_graph.app import create_app
from mlc_graph.observability.logs import configure_logging
from mlc_graph.platform.config import Settings
from mlc_graph.platform.migrate import migrate
from mlc_graph.tools.seed import DEMO, seed

ROOT = Path(__file__).resolve().parent.parent
BUDGET_FILE = Path(__file__).resolve().parent / "perf_budget.json"
SECRET = "mlc-budget-secret-0123456789abcdef0123456789"  # noqa: S105 - local measurement only
# The demo seed, anchored so that every run builds the same rows.
ANCHOR = datetime(2026, 6, 1, tzinfo=UTC)
REQUESTS = {"W1": 12, "W2": 40, "W3": 40, "W4": 60}
DEFAULT_MARGIN = 0.01
BUDGET_TIERS = orjson.dumps(
    {
        t: {"requests_per_hour": 10**9, "cost_per_hour": 10**12, "sessions": 10**6}
        for t in ("PRELUDE", "SOLO", "ENSEMBLE")
    }
).decode()

_PURELIB = Path(sysconfig.get_paths()["purelib"])
_STDLIB = Path(sysconfig.get_paths()["stdlib"])
COUNTED_DIRS = tuple(
    str(p)
    for p in (
        ROOT / "mlc_graph",
        ROOT / "resolvers",
        ROOT / "loaders",
        *(
            _PURELIB / lib
            for lib in ("aiohttp", "graphql", "strawberry", "asyncpg", "redis", "prometheus_client")
        ),
        _PURELIB / "aiodataloader.py",
        _STDLIB / "logging",
    )
)  # fmt: skip


def _first_resume(code: CodeType) -> int:
    """Offset of the RESUME that starts a call of `code` (after any prologue: cells, generator set-up)."""
    for instruction in dis.get_instructions(code):
        if instruction.opname == "RESUME":
            return instruction.offset
    return 0


class CallCounter:
    """Counts calls made by counted code while installed with sys.setprofile (one thread).

    A coroutine or generator raises a `call` event each time it resumes, and how often an `await`
    suspends depends on timing (was the answer already there?); only a call's first entry is counted:
    the event whose instruction is the code's first RESUME.
    """

    def __init__(self, counted_dirs: Sequence[str] = COUNTED_DIRS) -> None:
        self.counted_dirs = tuple(counted_dirs)
        self.calls = 0
        self._memo: dict[CodeType, int] = {}  # code -> its first RESUME's offset, or -2: not counted

    def _entry(self, code: CodeType) -> int:
        found = self._memo.get(code)
        if found is None:
            found = _first_resume(code) if code.co_filename.startswith(self.counted_dirs) else -2
            self._memo[code] = found
        return found

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":  # the callee's frame
            if frame.f_lasti == self._entry(frame.f_code):
                self.calls += 1
        elif event == "c_call" and self._entry(frame.f_code) != -2:  # the caller's: C has no frame
            self.calls += 1


@dataclass(frozen=True, slots=True)
class Cost:
    workload: str
    requests: int
    calls: int
    statements: int

    @property
    def calls_per_request(self) -> float:
        return round(self.calls / self.requests, 1)

    @property
    def statements_per_request(self) -> float:
        return round(self.statements / self.requests, 3)


class RawClient:
    """HTTP/1.1 keep-alive POSTs over asyncio streams: no client code of the counted libraries."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    async def post(self, path: str, token: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nAccept-Encoding: identity\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


async def _send_sequence(
    client: RawClient, workload: Workload, dataset: Dataset, count: int
) -> tuple[int, list[str]]:
    """Send the workload's fixed sequence; (statements, problems)."""
    rng, state = random.Random(7), dict[str, Any]()
    statements, problems = 0, []
    for _ in range(count):
        request = workload.pick(dataset, rng, state)
        body = orjson.dumps(
            {
                "query": workload.document,
                "variables": request.variables,
                "operationName": workload.operation_name,
            }
        )
        status, answer = await client.post("/graphql", request.token, body)
        if status != 200 or b'"errors":' in answer:
            problems.append(f"HTTP {status}: {answer[:200]!r}")
        if workload.follow is not None:
            workload.follow(state, orjson.loads(answer).get("data"))
        statements += sql_statements_in_body(answer) or 0
    return statements, problems


def budget_settings(database_url: str, redis_url: str, prefix: str) -> Settings:
    """Production's configuration (Redis admission, request log, metrics), limits above the sequence."""
    return Settings.from_env(
        {
            "MLC_ENV": "production",
            "DATABASE_URL": database_url,
            "MLC_JWT_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "MLC_REDIS_PREFIX": prefix,
            "MLC_TIER_OVERRIDES": BUDGET_TIERS,
            "MLC_DEBUG_SQL_COUNT": "1",
            "MLC_DB_POOL_MIN": "1",
            "MLC_DB_POOL_MAX": "4",
        }
    )


async def measure(
    database_url: str,
    redis_url: str,
    workloads: Sequence[Workload] = WORKLOADS,
    requests: dict[str, int] | None = None,
    counter_factory: Callable[[], CallCounter] = CallCounter,
    prepare_app: Callable[[web.Application], None] | None = None,
) -> dict[str, Cost]:
    """The cost of each workload on a demo-seeded database at `database_url` (migrated and seeded here
    when empty). `prepare_app` may change the app before it starts (the budget's own tests use it)."""
    counts = {**REQUESTS, **(requests or {})}
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM students)"):
            await seed(conn, DEMO, anchor=ANCHOR, progress=False)
        dataset = await load_dataset(conn, SECRET)
    finally:
        await conn.close()
    prefix = f"mlc-budget-{uuid.uuid4().hex[:12]}:"
    app = create_app(budget_settings(database_url, redis_url, prefix))
    if prepare_app is not None:
        prepare_app(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RawClient(reader, writer, f"127.0.0.1:{port}")
    # The server's logging, as `serve` sets it up (JSON lines at INFO: the request log included), into
    # /dev/null: the line is built and written, nobody reads it.
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    sink = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - /dev/null does not block; closed below
    configure_logging("INFO", stream=sink)
    results: dict[str, Cost] = {}
    try:
        for w in workloads:
            _, problems = await _send_sequence(client, w, dataset, counts[w.key])  # warms every cache
            if problems:
                raise RuntimeError(f"{w.key}: {problems[0]}")
            counter = counter_factory()
            sys.setprofile(counter)
            try:
                statements, problems = await _send_sequence(client, w, dataset, counts[w.key])
            finally:
                sys.setprofile(None)
            if problems:
                raise RuntimeError(f"{w.key}: {problems[0]}")
            results[w.key] = Cost(w.key, counts[w.key], counter.calls, statements)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sink.close()
        writer.close()
        await writer.wait_closed()
        await runner.cleanup()
        await _clear_redis(redis_url, prefix)
    return results


async def _clear_redis(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# --- the check -------------------------------------------------------------------------------------


def load_budget(path: Path = BUDGET_FILE) -> dict[str, Any]:
    budget: dict[str, Any] = orjson.loads(path.read_bytes())
    return budget


def check(budget: dict[str, Any], measured: dict[str, Cost]) -> tuple[list[str], str]:
    """(failures, the before/after table)."""
    margin = float(budget.get("margin", DEFAULT_MARGIN))
    failures: list[str] = []
    rows = [
        f"| workload | calls/request budget | measured | change | limit (+{margin:.0%}) "
        "| SQL/request budget | measured | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for key, cost in measured.items():
        allowed = budget["workloads"].get(key)
        if allowed is None:
            failures.append(f"{key}: no budget (run `python -m bench.budget --update` and commit it)")
            continue
        calls, sql = allowed["calls_per_request"], allowed["statements_per_request"]
        limit = calls * (1 + margin)
        problems = []
        if cost.calls_per_request > limit:
            problems.append(f"calls/request {cost.calls_per_request:,.1f} > {limit:,.1f}")
        if cost.statements_per_request > sql:
            problems.append(f"SQL statements/request {cost.statements_per_request:g} > {sql:g}")
        failures += [f"{key}: {p}" for p in problems]
        change = (cost.calls_per_request - calls) / calls if calls else 0.0
        rows.append(
            f"| {key} | {calls:,.1f} | {cost.calls_per_request:,.1f} | {change:+.1%} | {limit:,.1f} "
            f"| {sql:g} | {cost.statements_per_request:g} | {'over budget' if problems else 'ok'} |"
        )
    return failures, "\n".join(rows)


def budget_document(measured: dict[str, Cost], margin: float) -> dict[str, Any]:
    return {
        "about": "bench/budget.py (make perf-budget): calls and SQL statements per request, fixed sequences",
        "margin": margin,
        "requests": {k: c.requests for k, c in measured.items()},
        "workloads": {
            k: {"calls_per_request": c.calls_per_request, "statements_per_request": c.statements_per_request}
            for k, c in measured.items()
        },
    }


async def measure_on_own_database(base_url: str, redis_url: str, **options: Any) -> dict[str, Cost]:
    """`measure` on a database of its own (next to `base_url`'s), dropped afterwards."""
    server, _, _ = base_url.rpartition("/")
    name = f"mlc_budget_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        return await measure(f"{server}/{name}", redis_url, **options)
    finally:
        admin = await asyncpg.connect(server + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (default DATABASE_URL's)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--update", action="store_true", help="write bench/perf_budget.json from this code")
    parser.add_argument("--margin", type=float, default=None, help="with --update: the allowed growth")
    opts = parser.parse_args(argv)
    base = (
        opts.database_url or os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    measured = asyncio.run(measure_on_own_database(base, opts.redis_url))
    if opts.update:
        old = load_budget() if BUDGET_FILE.exists() else {}
        margin = opts.margin if opts.margin is not None else float(old.get("margin", DEFAULT_MARGIN))
        document = budget_document(measured, margin)
        BUDGET_FILE.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        if old:
            print(check(old, measured)[1])
        print(f"wrote {BUDGET_FILE}")
        return 0
    failures, table = check(load_budget(), measured)
    print(table)
    if failures:
        print("performance budget exceeded:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("performance budget: every workload within budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
