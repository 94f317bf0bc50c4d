"""`python -m bench.run --quick|--full`: MLC Graph against PostGraphile 5 and 4 and the raw-SQL floor.

Seeds district scale once into a dedicated database (default `mlc_bench`), starts MLC Graph in its
production configuration (Redis on) and without Redis, PostGraphile 5 and 4 (bench/baselines.py) and
the floor as subprocesses on 127.0.0.1, prepares each server's request sequence for wrk (bench/wrk.py),
warms them up, then per workload: 32 connections for throughput (medians of the rounds, server order
reversed every other round), 1 connection for latency, MLC Graph again with `--workers 2`, and W1 at
students(first: 10) vs (first: 100). Prints the tables and writes bench/RESULTS.md (between markers, so
hand-written notes there survive) and bench/results.json. Every process it starts is stopped on exit,
error or Ctrl-C. See docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg
import orjson
from redis.asyncio import Redis

from bench import baselines, procstats, wrk
from bench.costtime import cost_timings
from bench.load import Target, compare_answers
from bench.workloads import WORKLOADS, Workload, dashboard_workload, load_dataset
from bench.wrk import WrkResult
from mlc_graph.platform.config import Settings
from mlc_graph.platform.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
BENCH_SECRET = "mlc-bench-secret-0123456789abcdef0123456789"  # noqa: S105 - local benchmark only
DISTRICT_STUDENTS = 20_000
SELECT_SEEDED = "SELECT (SELECT count(*) FROM students), EXISTS (SELECT 1 FROM best_scores)"
SELECT_DATABASE = "SELECT 1 FROM pg_database WHERE datname = $1"
# Index-only scans need a fresh visibility map; run once after seeding.
VACUUM_ANALYZE = "VACUUM ANALYZE"


@dataclass(frozen=True, slots=True)
class Plan:
    """How long each measurement runs (seconds)."""

    name: str
    warmup: int
    rounds: int
    duration: int
    single_duration: int
    page_duration: int
    workers2_duration: int
    sequence: int = wrk.SEQUENCE_LENGTH  # prepared requests each wrk run cycles


# Quick: about a minute in all, including two server start-ups; a smoke test of the figures, not a result.
QUICK = Plan(
    "quick",
    warmup=1,
    rounds=1,
    duration=2,
    single_duration=1,
    page_duration=1,
    workers2_duration=2,
    sequence=60,
)
# Whole seconds: wrk's -d takes no fractions.
FULL = Plan("full", warmup=2, rounds=3, duration=8, single_duration=4, page_duration=3, workers2_duration=6)


# --- processes -------------------------------------------------------------------------------------


class Processes:
    """The subprocesses this run started; each in its own session so it and its workers stop together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        self.running[name] = proc
        return proc

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, name: str) -> None:
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # The group is the one start() created for this child (start_new_session): only what we started.
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_ready(url: str, proc: subprocess.Popen[bytes], procs: Processes, name: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{name} did not become ready at {url}:\n{procs.log_tail(name)}")


# --- database ---------------------------------------------------------------------------------------


def bench_database_url(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    base = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    return base.rpartition("/")[0] + "/mlc_bench"


async def ensure_seeded(url: str, log_dir: Path) -> dict[str, Any]:
    """Create, migrate and seed the bench database unless it already holds district-scale data."""
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(base + "/postgres")
    try:
        if not await admin.fetchval(SELECT_DATABASE, name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        row = await conn.fetchrow(SELECT_SEEDED)
        students, scored = (row[0], row[1]) if row is not None else (0, False)
    finally:
        await conn.close()
    if students >= DISTRICT_STUDENTS and scored:
        return {"seeded_now": False, "students": students}
    print(f"seeding district scale into {name} (once; later runs reuse it) ...", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "DATABASE_URL": url}
    argv = [sys.executable, "-m", "mlc_graph.cli", "seed", "--scale", "district"]
    if students:
        argv.append("--reset")
    with (log_dir / "seed.log").open("wb") as log:
        seeder = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        code = await seeder.wait()
    if code != 0:
        raise RuntimeError(f"seeding failed ({code}); see {log_dir / 'seed.log'}")
    seeded = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(VACUUM_ANALYZE)
    finally:
        await conn.close()
    total = time.perf_counter() - started
    print(f"seeded in {seeded:.0f} s (+ vacuum analyze: {total:.0f} s total)", flush=True)
    return {"seeded_now": True, "seed_seconds": round(seeded, 1), "students": DISTRICT_STUDENTS}


# --- servers ----------------------------------------------------------------------------------------

# Limits far above what the bench sends, so admission does all its work (Redis round trip, counters,
# sessions) and refuses nothing. MLC_TIER_OVERRIDES is how production support raises a limit too.
BENCH_TIER_OVERRIDES = orjson.dumps(
    {
        tier: {"requests_per_hour": 1_000_000_000, "cost_per_hour": 1_000_000_000_000, "sessions": 1_000_000}
        for tier in ("PRELUDE", "SOLO", "ENSEMBLE")
    }
).decode()
GRAPHQL = "graphql"  # the judged configuration: production, Redis on
GRAPHQL_NO_REDIS = "graphql-noredis"  # the same without REDIS_URL: what admission through Redis costs
FLOOR = "floor"
POSTGRAPHILE4, POSTGRAPHILE5 = "postgraphile4", "postgraphile5"
ALL_SERVERS = (GRAPHQL, GRAPHQL_NO_REDIS, POSTGRAPHILE5, POSTGRAPHILE4, FLOOR)
LABELS = {
    GRAPHQL: "MLC Graph (production, Redis)",
    GRAPHQL_NO_REDIS: "MLC Graph, no Redis",
    POSTGRAPHILE5: "PostGraphile 5",
    POSTGRAPHILE4: "PostGraphile 4",
    FLOOR: "floor",
}


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str


def _base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLC_") and k not in {"REDIS_URL", "PORT"}}
    env.update(DATABASE_URL=database_url, MLC_JWT_SECRET=BENCH_SECRET, HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    return env


def server_env(
    database_url: str, extra: Sequence[str], redis_url: str | None, redis_prefix: str = "mlc-bench:"
) -> dict[str, str]:
    """MLC Graph as production runs it: MLC_ENV=production (request log and metrics on by default),
    Redis for quotas, sessions and live boards when `redis_url` is given, tier limits raised above the
    load. MLC_DEBUG_SQL_COUNT=1 keeps `extensions.sqlStatements` in the answers (one integer)."""
    env = _base_env(database_url)
    env.update(MLC_ENV="production", MLC_DEBUG_SQL_COUNT="1", MLC_TIER_OVERRIDES=BENCH_TIER_OVERRIDES)
    if redis_url:
        env.update(REDIS_URL=redis_url, MLC_REDIS_PREFIX=redis_prefix)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--server-env expects KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def graphql_argv(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "mlc_graph.cli", "serve", "--port", str(port), "--workers", str(workers)]


def servers(opts: argparse.Namespace, url: str, ports: dict[str, int], prefix: str) -> list[Server]:
    floor_env = {**_base_env(url), "MLC_ENV": "development"}
    node_env = {**_base_env(url), "NODE_ENV": "production"}
    with_redis = server_env(url, opts.server_env, opts.redis_url, prefix)
    without = server_env(url, opts.server_env, None)
    everything = {
        GRAPHQL: Server(GRAPHQL, graphql_argv(ports[GRAPHQL], 1), with_redis, "/readyz"),
        GRAPHQL_NO_REDIS: Server(GRAPHQL_NO_REDIS, graphql_argv(ports[GRAPHQL_NO_REDIS], 1), without,
                                 "/readyz"),
        FLOOR: Server(FLOOR, [sys.executable, "-m", "bench.floor", "--port", str(ports[FLOOR])], floor_env,
                      "/healthz"),
        POSTGRAPHILE4: Server(POSTGRAPHILE4, baselines.server_argv(POSTGRAPHILE4, ports[POSTGRAPHILE4]),
                              node_env, "/healthz"),
        POSTGRAPHILE5: Server(POSTGRAPHILE5, baselines.server_argv(POSTGRAPHILE5, ports[POSTGRAPHILE5]),
                              node_env, "/healthz"),
    }  # fmt: skip
    return [everything[name] for name in ALL_SERVERS if name in opts.servers]


async def clear_redis(redis_url: str, prefix: str) -> int:
    """Delete this run's keys (its unique prefix) from the shared Redis."""
    client = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


# --- measuring --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    """One load run plus the CPU each party spent during it."""

    load: WrkResult
    server_cpu: float
    postgres_cpu: float

    def summary(self) -> dict[str, Any]:
        out = self.load.summary()
        ok = self.load.requests - self.load.errors
        elapsed = self.load.elapsed
        out["server_cpu_ms_per_request"] = round(self.server_cpu / ok * 1000, 3) if ok else None
        out["postgres_cpu_ms_per_request"] = round(self.postgres_cpu / ok * 1000, 3) if ok else None
        out["server_cpu_share"] = round(self.server_cpu / elapsed, 3) if elapsed else 0.0
        out["postgres_cpu_share"] = round(self.postgres_cpu / elapsed, 3) if elapsed else 0.0
        out["load_average"] = round(os.getloadavg()[0], 2)
        return out


@dataclass(slots=True)
class Bench:
    plan: Plan
    database: str
    sequences: dict[tuple[str, str], wrk.Sequence] = field(default_factory=dict)

    async def measure(
        self, target: Target, pid: int, workload_key: str, clients: int, duration: float
    ) -> Measured:
        sequence = self.sequences[(target.name, workload_key)]
        server_before = procstats.tree_cpu_seconds(pid)
        pg_before = procstats.postgres_backends_cpu(self.database)
        result = await wrk.run_wrk(target, sequence, clients=clients, duration=duration)
        measured = Measured(
            result,
            procstats.tree_cpu_seconds(pid) - server_before,
            procstats.cpu_delta(pg_before, procstats.postgres_backends_cpu(self.database)),
        )
        s = measured.summary()
        line = (
            f"  {workload_key:<11} {target.name:<15} c={clients:<3} {s['rps']:>9.1f} req/s  "
            f"p50 {s['p50_ms']:>8.2f}  p95 {s['p95_ms']:>8.2f}  p99 {s['p99_ms']:>8.2f} ms  "
            f"cpu {s['server_cpu_ms_per_request'] or 0:>6.3f} ms/req  "
            f"pg {s['postgres_cpu_ms_per_request'] or 0:>6.3f}  "
            f"sql/req {s['statements_per_request']}  errors {s['errors']}  load {s['load_average']}"
        )
        if result.first_error:
            line += f"\n      first error: {result.first_error[:300]}"
        print(line, flush=True)
        return measured


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


SUMMARY_KEYS = (
    "rps", "p50_ms", "p95_ms", "p99_ms", "statements_per_request", "response_bytes", "client_cpu_share",
    "server_cpu_ms_per_request", "postgres_cpu_ms_per_request", "server_cpu_share", "postgres_cpu_share",
)  # fmt: skip


def aggregate(runs: Sequence[Measured]) -> dict[str, Any]:
    """Medians over rounds; errors summed."""
    summaries = [r.summary() for r in runs]
    out: dict[str, Any] = {k: _median([s[k] for s in summaries]) for k in SUMMARY_KEYS}
    out["errors"] = sum(s["errors"] for s in summaries)
    out["requests"] = sum(s["requests"] for s in summaries)
    out["first_error"] = next((s["first_error"] for s in summaries if s["first_error"]), None)
    out["rounds"] = summaries
    return out


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 4) if top and bottom else None


def workload_result(
    w: Workload,
    rounds: Mapping[str, Sequence[Measured]],
    single: Mapping[str, Measured],
    workers2: dict[str, Any] | None,
) -> dict[str, Any]:
    """One workload's line of results.json: per server its medians and 1-client figures, and MLC Graph's
    ratios to each baseline (throughput: MLC / other, so above 1 is faster; CPU: other / MLC per answer,
    so above 1 is cheaper)."""
    per_server: dict[str, Any] = {}
    for name, runs in rounds.items():
        agg = aggregate(runs)
        one = single[name].summary() if name in single else {}
        per_server[name] = {
            **{k: agg[k] for k in SUMMARY_KEYS},
            "errors": agg["errors"] + one.get("errors", 0),
            "first_error": agg["first_error"] or one.get("first_error"),
            "single_client_p50_ms": one.get("p50_ms"),
            "single_client_p95_ms": one.get("p95_ms"),
            "single_client_p99_ms": one.get("p99_ms"),
            "rounds": agg["rounds"],
            "single_client": one or None,
        }
    mlc = per_server.get(GRAPHQL, {})
    ratios: dict[str, Any] = {}
    for other in (POSTGRAPHILE5, POSTGRAPHILE4, FLOOR, GRAPHQL_NO_REDIS):
        theirs = per_server.get(other)
        if not mlc or not theirs:
            continue
        ratios[other] = {
            "rps": _ratio(mlc.get("rps"), theirs.get("rps")),
            "cpu": _ratio(theirs.get("server_cpu_ms_per_request"), mlc.get("server_cpu_ms_per_request")),
            "single_client_p95": _ratio(theirs.get("single_client_p95_ms"), mlc.get("single_client_p95_ms")),
        }
    admission = None
    if mlc and per_server.get(GRAPHQL_NO_REDIS):
        with_redis = mlc.get("server_cpu_ms_per_request")
        without = per_server[GRAPHQL_NO_REDIS].get("server_cpu_ms_per_request")
        if with_redis is not None and without is not None:
            admission = round(with_redis - without, 3)
    return {
        "title": w.title,
        "servers": per_server,
        "ratios": ratios,
        "redis_cpu_ms_per_request": admission,  # MLC with Redis minus without: admission + live board
        "workers2": workers2,
    }


# --- the run ----------------------------------------------------------------------------------------


async def run_bench(opts: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    plan = FULL if opts.full else QUICK
    url = bench_database_url(opts.database_url)
    started_at = dt.datetime.now(dt.UTC)
    # Other work on the machine skews every figure: record how busy it was when the run began and after.
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 1.5:
        print(f"warning: load average {load_before[0]} before starting: other work will skew the figures")
    wrk.wrk_path()
    if any(name in opts.servers for name in baselines.DIALECTS) and not baselines.installed():
        raise SystemExit("PostGraphile is not installed in bench/postgraphile: run `make bench-setup`")
    seed_info = await ensure_seeded(url, procs.log_dir)
    conn = await asyncpg.connect(url)
    try:
        dataset = await load_dataset(conn, BENCH_SECRET, seed=opts.seed)
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    workloads = [w for w in WORKLOADS if not opts.workloads or w.key in opts.workloads]
    costs = cost_timings(dataset)
    bench = Bench(plan, url.rpartition("/")[2])
    prefix = f"mlc-bench-{uuid.uuid4().hex[:12]}:"
    if not opts.redis_url:
        opts.servers = [s for s in opts.servers if s != GRAPHQL_NO_REDIS]
    ports = {name: free_port() for name in ALL_SERVERS}
    planned = servers(opts, url, ports, prefix)
    if GRAPHQL not in {s.name for s in planned}:
        raise SystemExit("--servers must include graphql: the ratios are MLC Graph's")
    started: dict[str, subprocess.Popen[bytes]] = {}
    for server in planned:
        started[server.name] = procs.start(server.name, server.argv, server.env)
    for server in planned:
        base = f"http://127.0.0.1:{ports[server.name]}"
        await wait_ready(base + server.ready_path, started[server.name], procs, server.name)
    targets = {s.name: Target(s.name, f"http://127.0.0.1:{ports[s.name]}") for s in planned}
    pids = {name: proc.pid for name, proc in started.items()}
    rss: dict[str, Any] = {f"{name}_idle_mb": _mb(procstats.rss_bytes(pid)) for name, pid in pids.items()}
    print(f"{plan.name} run against {url}; servers {', '.join(targets)}; logs in {procs.log_dir}", flush=True)

    # Same requests to MLC Graph and the floor: the floor must give the same data, or the ratio means nothing.
    parity: dict[str, str] = {}
    if FLOOR in targets:
        for w in workloads:
            problem = await compare_answers(targets[GRAPHQL], targets[FLOOR], w, dataset)
            parity[w.key] = "same" if problem is None else f"differs: {problem}"
            if problem is not None:
                print(f"warning: {w.key} answers differ between GraphQL and the floor: {problem}", flush=True)

    print(f"preparing {plan.sequence} requests per server and workload (each sent once, checked)")
    page_workloads = (
        [dashboard_workload(10), dashboard_workload(100)] if any(w.key == "W1" for w in workloads) else []
    )
    for name, target in targets.items():
        for w in [*workloads, *(page_workloads if name in (GRAPHQL, FLOOR) else [])]:
            seq = await wrk.prepare_sequence(
                target, w, dataset, procs.log_dir, count=plan.sequence, seed=opts.seed
            )
            bench.sequences[(name, w.key)] = seq
            if seq.problem:
                print(f"warning: {name} {w.key}: {seq.problem}", flush=True)

    print("warm-up", flush=True)
    for w in workloads:
        for name, target in targets.items():
            await bench.measure(target, pids[name], w.key, opts.clients, plan.warmup)

    print(f"throughput: {opts.clients} clients, {plan.rounds} round(s) of {plan.duration:g} s", flush=True)
    rounds: dict[str, dict[str, list[Measured]]] = {}
    for index in range(plan.rounds):
        order = list(targets) if index % 2 == 0 else list(reversed(targets))  # no server always goes first
        for w in workloads:
            for name in order:
                rounds.setdefault(w.key, {}).setdefault(name, []).append(
                    await bench.measure(targets[name], pids[name], w.key, opts.clients, plan.duration)
                )

    print("latency: 1 client", flush=True)
    single: dict[str, dict[str, Measured]] = {}
    for w in workloads:
        for name, target in targets.items():
            single.setdefault(w.key, {})[name] = await bench.measure(
                target, pids[name], w.key, 1, plan.single_duration
            )

    page_size: dict[str, Any] = {}
    if page_workloads:
        print("W1 page size: students(first: 10) vs (first: 100), 1 client", flush=True)
        for pw in page_workloads:
            for name in (GRAPHQL, FLOOR):
                if name in targets:
                    m = await bench.measure(targets[name], pids[name], pw.key, 1, plan.page_duration)
                    page_size[f"{name}_first{pw.key.rpartition('first')[2]}"] = m.summary()
        page_size["growth"] = _growth(page_size)
    for name, pid in pids.items():
        rss[f"{name}_after_load_mb"] = _mb(procstats.rss_bytes(pid))

    workers2: dict[str, Any] = {}
    if not opts.no_workers2:
        main_server = next(s for s in planned if s.name == GRAPHQL)
        procs.stop(GRAPHQL)
        gql2 = procs.start("graphql-2w", graphql_argv(ports[GRAPHQL], 2), main_server.env)
        await wait_ready(targets[GRAPHQL].base_url + "/readyz", gql2, procs, "graphql-2w")
        await asyncio.sleep(1.0)  # both workers listening before load starts
        rss["graphql_workers2_idle_mb"] = [
            _mb(procstats.rss_bytes(p)) for p in procstats.process_tree(gql2.pid)
        ]
        print(
            f"--workers 2: warm-up, then {plan.rounds} round(s) of {plan.workers2_duration:g} s", flush=True
        )
        for w in workloads:
            await bench.measure(targets[GRAPHQL], gql2.pid, w.key, opts.clients, plan.warmup)
        runs: dict[str, list[Measured]] = {}
        for _ in range(plan.rounds):
            for w in workloads:
                runs.setdefault(w.key, []).append(
                    await bench.measure(
                        targets[GRAPHQL], gql2.pid, w.key, opts.clients, plan.workers2_duration
                    )
                )
        workers2 = {key: aggregate(r) for key, r in runs.items()}
        rss["graphql_workers2_mb"] = [_mb(procstats.rss_bytes(p)) for p in procstats.process_tree(gql2.pid)]
        procs.stop("graphql-2w")
    procs.stop_all()
    if opts.redis_url:
        await clear_redis(opts.redis_url, prefix)

    results = {
        w.key: workload_result(w, rounds[w.key], single[w.key], workers2.get(w.key)) for w in workloads
    }
    return {
        "mode": plan.name,
        "date": started_at.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started_at).total_seconds()),
        "machine": {
            **procstats.machine(str(pg_version)),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "database": url.rpartition("/")[2],
        "seed": seed_info,
        "plan": {
            "clients": opts.clients,
            "rounds": plan.rounds,
            "seconds_per_round": plan.duration,
            "single_client_seconds": plan.single_duration,
            "warmup_seconds": plan.warmup,
            "server_env": list(opts.server_env),
            "redis": bool(opts.redis_url),
            "generator": "wrk",
            "servers": list(targets),
            "requests_per_sequence": plan.sequence,
        },
        "git": _git_head(),
        "server_settings": _server_settings(next(s for s in planned if s.name == GRAPHQL).env),
        "workloads": results,
        "page_size": page_size,
        "rss": rss,
        "cost_analysis": costs,
        "parity": parity,
    }


def _mb(n: int) -> float:
    return round(n / 1024 / 1024, 1)


def _growth(page_size: dict[str, Any]) -> dict[str, Any]:
    """Time per request and per response byte from first: 10 to first: 100, per target."""
    out: dict[str, Any] = {}
    for target in (GRAPHQL, FLOOR):
        small, large = page_size.get(f"{target}_first10"), page_size.get(f"{target}_first100")
        if not small or not large or not small["mean_ms"]:
            continue
        extra_kb = (large["response_bytes"] - small["response_bytes"]) / 1024
        out[target] = {
            "time_ratio": round(large["mean_ms"] / small["mean_ms"], 2),
            "bytes_ratio": round(large["response_bytes"] / small["response_bytes"], 2)
            if small["response_bytes"]
            else None,
            "ms_per_extra_kb": round((large["mean_ms"] - small["mean_ms"]) / extra_kb, 4)
            if extra_kb > 0
            else None,
        }
    return out


def _git_head() -> str | None:
    """The commit measured, with `+dirty` when tracked files had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return None
    return (head + ("+dirty" if dirty else "")) or None


def _server_settings(env: dict[str, str]) -> dict[str, Any]:
    """The settings that shape the figures, as the server will read them from `env`."""
    settings = Settings.from_env(env)
    return {
        "env": settings.env,
        "executor": getattr(settings, "executor", None),
        "pool_max": settings.pool.max_size,
        "access_log": settings.access_log,
        "request_log": getattr(settings, "request_log", None),
        "sql_comment": getattr(settings, "sql_comment", None),
        "compression": getattr(settings, "compression", None),  # the load sends Accept-Encoding: identity
        "redis": settings.redis_url is not None,
    }


# --- reporting --------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def _columns(run: dict[str, Any]) -> list[str]:
    return [name for name in ALL_SERVERS if name in run["plan"].get("servers", ALL_SERVERS)]


def _per_server_table(run: dict[str, Any], title: str, key: str, digits: int) -> str:
    names = _columns(run)
    head = f"| {title} | " + " | ".join(LABELS[n] for n in names) + " |"
    rows = [head, "| --- |" + " ---: |" * len(names)]
    for wkey, w in run["workloads"].items():
        cells = [_fmt(w["servers"].get(n, {}).get(key), digits) for n in names]
        rows.append(f"| {wkey} {w['title']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ratio_table(run: dict[str, Any]) -> str:
    """MLC Graph against each baseline: throughput, CPU per answer, 1-client p95 (above x1.00: MLC ahead)."""
    others = [n for n in (POSTGRAPHILE5, POSTGRAPHILE4, FLOOR) if n in _columns(run)]
    head = "| workload | " + " | ".join(f"vs {LABELS[n]}: req/s, CPU, 1-client p95" for n in others)
    rows = [head + " | 2 workers req/s | Redis cost ms/request |", "| --- |" + " ---: |" * (len(others) + 2)]
    for wkey, w in run["workloads"].items():
        cells = []
        for n in others:
            r = w["ratios"].get(n, {})
            cells.append(f"{_x(r.get('rps'))}, {_x(r.get('cpu'))}, {_x(r.get('single_client_p95'))}")
        two = (w.get("workers2") or {}).get("rps")
        rows.append(
            f"| {wkey} | "
            + " | ".join(cells)
            + f" | {_fmt(two)} | {_fmt(w.get('redis_cpu_ms_per_request'), 3)} |"
        )
    return "\n".join(rows)


def latency_table(run: dict[str, Any]) -> str:
    names = _columns(run)
    head = "| workload | " + " | ".join(f"{LABELS[n]} p50 / p95 / p99" for n in names) + " |"
    rows = [head, "| --- |" + " ---: |" * len(names)]
    for wkey, w in run["workloads"].items():
        cells = []
        for n in names:
            s = w["servers"].get(n, {})
            cells.append(" / ".join(_fmt(s.get(k), 2) for k in ("p50_ms", "p95_ms", "p99_ms")))
        rows.append(f"| {wkey} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def markdown(run: dict[str, Any]) -> str:
    m = run["machine"]
    plan = run["plan"]
    lines = [
        f"## {run['mode']} run, {run['date']} (commit {run['git']})",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']} on the same machine; load average "
        f"{m['load_average_before'][0]} at the start, {m.get('load_average_after', ['-'])[0]} at the end. "
        f"Database `{run['database']}` at district scale. Load from wrk ({plan.get('generator', 'wrk')}), "
        f"{plan['clients']} keep-alive connections cycling {plan.get('requests_per_sequence')} prepared "
        f"requests per server and workload, {plan['rounds']} round(s) of {plan['seconds_per_round']:g} s "
        f"(server order reversed every other round; medians), 1-client runs of "
        f"{plan['single_client_seconds']:g} s; the whole run took {run['seconds']} s."
        + (f" Server env: {', '.join(plan['server_env'])}." if plan["server_env"] else "")
        + (" MLC Graph: production configuration, REDIS_URL set." if plan["redis"] else " No REDIS_URL.")
        + (_settings_line(run["server_settings"]) if run.get("server_settings") else ""),
        "",
        _per_server_table(run, "req/s at 32 clients", "rps", 1),
        "",
        "MLC Graph (production) against each baseline, as ratios (above x1.00 MLC Graph is ahead: more "
        "req/s, less CPU per answer, lower 1-client p95). Redis cost: MLC Graph's CPU per answer with "
        "REDIS_URL minus without (quota, session and tier admission, and W2's live board):",
        "",
        ratio_table(run),
        "",
        _per_server_table(run, "server CPU ms/request", "server_cpu_ms_per_request", 3),
        "",
        _per_server_table(run, "PostgreSQL CPU ms/request", "postgres_cpu_ms_per_request", 3),
        "",
        _per_server_table(run, "1-client p95 ms", "single_client_p95_ms", 2),
        "",
        _per_server_table(run, "SQL statements/request", "statements_per_request", 1),
        "",
        "Latency at 32 clients, ms (follows throughput: about 32 / req/s):",
        "",
        latency_table(run),
        "",
        _per_server_table(run, "load generator CPU (share of a core)", "client_cpu_share", 3),
        "",
        "Errors (non-200, `errors` in an answer, socket errors): "
        + "; ".join(
            f"{wkey}: " + ", ".join(f"{n} {s['errors']}" for n, s in w["servers"].items())
            for wkey, w in run["workloads"].items()
        )
        + ".",
    ]
    growth = run["page_size"].get("growth")
    if growth:
        ps = run["page_size"]
        lines += [
            "",
            "W1 page size, 1 client, mean ms per request (response KB): students(first: 10) -> (first: 100):",
            "",
        ]
        for target in (GRAPHQL, FLOOR):
            small, large = ps.get(f"{target}_first10"), ps.get(f"{target}_first100")
            if small and large and target in growth:
                g = growth[target]
                lines.append(
                    f"- {target}: {small['mean_ms']:.2f} ms ({small['response_bytes'] / 1024:.0f} KB) -> "
                    f"{large['mean_ms']:.2f} ms ({large['response_bytes'] / 1024:.0f} KB): "
                    f"x{g['time_ratio']} time for x{g['bytes_ratio']} data, "
                    f"{_fmt(g['ms_per_extra_kb'], 3)} ms per extra KB"
                )
    parity = run.get("parity") or {}
    if parity:
        same = all(v == "same" for v in parity.values())
        lines += [
            "",
            "Answers compared before the load (3 requests per workload, MLC Graph's `data` vs the floor's): "
            + (
                "identical for every workload." if same else "; ".join(f"{k}: {v}" for k, v in parity.items())
            ),
        ]
    rss = run["rss"]
    lines += ["", "RSS MB: " + ", ".join(f"{k.removesuffix('_mb')} {v}" for k, v in rss.items()) + "."]
    if run.get("cost_analysis"):
        lines += ["", "Cost analysis per operation (in-process, the analyzer alone):", ""]
        for key, c in run["cost_analysis"].items():
            lines.append(
                f"- {key}: requested cost {c['requested_cost']}, first pricing {c['uncached_ms']:.3f} ms, "
                f"cached {c['cached_median_us']:.1f} us (median)"
            )
    return "\n".join(lines) + "\n"


def _settings_line(settings: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    return f" Server settings: {shown}."


def write_markdown(path: Path, run: dict[str, Any]) -> None:
    """Replace this mode's generated block; keep everything else (hand-written notes, the other mode)."""
    begin, end = f"<!-- bench:{run['mode']}:begin -->", f"<!-- bench:{run['mode']}:end -->"
    block = f"{begin}\n{markdown(run)}{end}"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmark results\n\nWritten by `make bench` / `make bench-quick`.\n"
    )
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def write_json(path: Path, run: dict[str, Any]) -> None:
    """results.json keeps the latest run of each mode."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            data = {}
    data[run["mode"]] = run
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


# --- entry point ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 1 minute, 1 round (default)")
    mode.add_argument("--full", action="store_true", help="about 13 minutes, medians of 3 rounds")
    parser.add_argument("--database-url", help="bench database (default BENCH_DATABASE_URL or .../mlc_bench)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for throughput (32)")
    parser.add_argument("--workloads", nargs="*", choices=[w.key for w in WORKLOADS], help="subset to run")
    parser.add_argument("--no-workers2", action="store_true", help="skip the --workers 2 server")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server and floor (repeatable)")  # fmt: skip
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis of the production configuration (keys under a unique prefix, deleted after)",
    )
    parser.add_argument(
        "--no-redis",
        dest="redis_url",
        action="store_const",
        const=None,
        help="measure MLC Graph without REDIS_URL only",
    )
    parser.add_argument(
        "--servers",
        nargs="*",
        default=list(ALL_SERVERS),
        choices=ALL_SERVERS,
        help="servers to measure (default all; graphql is always needed)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the request sequence")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md/results.json")
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    log_dir = BENCH_DIR / "out"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="run-", dir=log_dir))
    procs = Processes(log_dir)
    # SIGTERM stops the run like Ctrl-C does, so the finally below still stops the servers; SIGINT is
    # restored in case a parent shell started us with it ignored (background jobs do).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = asyncio.run(run_bench(opts, procs))
    except KeyboardInterrupt:
        print("interrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
    print()
    print(markdown(run))
    if not opts.no_write:
        write_markdown(BENCH_DIR / "RESULTS.md", run)
        write_json(BENCH_DIR / "results.json", run)
        print(f"\nwrote {BENCH_DIR / 'RESULTS.md'} and {BENCH_DIR / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
