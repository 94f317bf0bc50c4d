"""`python -m bench.run --quick|--full`: the GraphQL server against the raw-SQL floor, same data, same run.

Seeds district scale once into a dedicated database (default `mlc_bench`), starts the floor and the
server as subprocesses on 127.0.0.1, warms both up, then per workload: 32 concurrent clients for
throughput (medians of the rounds), 1 client for latency, the server again with `--workers 2`, and W1
at students(first: 10) vs (first: 100). Prints the table and writes bench/RESULTS.md (between markers,
so hand-written notes there survive) and bench/results.json. Every process it starts is stopped on
exit, error or Ctrl-C. See docs/BENCHMARKS.md.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import procstats
from bench.costtime import cost_timings
from bench.load import LoadResult, Target, compare_answers, run_load
from bench.workloads import WORKLOADS, Dataset, Workload, dashboard_workload, load_dataset
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
    warmup: float
    rounds: int
    duration: float
    single_duration: float
    page_duration: float
    workers2_duration: float
    max_rps: int = 20_000  # request bound = duration x this, so no run is bounded by time alone


# Quick: about a minute in all, including two server start-ups; a smoke test of the figures, not a result.
QUICK = Plan(
    "quick", warmup=0.5, rounds=1, duration=2.0, single_duration=1.0, page_duration=1.0, workers2_duration=2.0
)
FULL = Plan(
    "full", warmup=5.0, rounds=3, duration=12.0, single_duration=8.0, page_duration=6.0, workers2_duration=8.0
)


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


# --- measuring --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    """One load run plus the CPU each party spent during it."""

    load: LoadResult
    server_cpu: float
    postgres_cpu: float

    def summary(self) -> dict[str, Any]:
        out = self.load.summary()
        ok = self.load.requests - self.load.errors
        out["server_cpu_ms_per_request"] = round(self.server_cpu / ok * 1000, 3) if ok else None
        out["server_cpu_share"] = round(self.server_cpu / self.load.elapsed, 3) if self.load.elapsed else 0.0
        out["postgres_cpu_share"] = (
            round(self.postgres_cpu / self.load.elapsed, 3) if self.load.elapsed else 0.0
        )
        return out


@dataclass(slots=True)
class Bench:
    plan: Plan
    dataset: Dataset
    clients: int
    database: str
    log: list[str] = field(default_factory=list)

    async def measure(
        self, target: Target, pid: int, workload: Workload, clients: int, duration: float
    ) -> Measured:
        server_before = procstats.tree_cpu_seconds(pid)
        pg_before = procstats.postgres_backends_cpu(self.database)
        result = await run_load(
            target,
            workload,
            self.dataset,
            clients=clients,
            duration=duration,
            max_requests=max(1, int(duration * self.plan.max_rps)),
        )
        measured = Measured(
            result,
            procstats.tree_cpu_seconds(pid) - server_before,
            procstats.cpu_delta(pg_before, procstats.postgres_backends_cpu(self.database)),
        )
        s = measured.summary()
        line = (
            f"  {workload.key:<11} {target.name:<9} c={clients:<3} {s['rps']:>9.1f} req/s  "
            f"p50 {s['p50_ms']:>8.2f}  p95 {s['p95_ms']:>8.2f}  p99 {s['p99_ms']:>8.2f} ms  "
            f"sql/req {s['statements_per_request']}  errors {s['errors']}"
        )
        if result.first_error:
            line += f"\n      first error: {result.first_error[:300]}"
        print(line, flush=True)
        return measured


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def aggregate(runs: Sequence[Measured]) -> dict[str, Any]:
    """Medians over rounds; errors summed."""
    summaries = [r.summary() for r in runs]
    keys = (
        "rps", "p50_ms", "p95_ms", "p99_ms", "statements_per_request", "response_bytes",
        "client_cpu_share", "server_cpu_ms_per_request", "server_cpu_share", "postgres_cpu_share",
    )  # fmt: skip
    out: dict[str, Any] = {k: _median([s[k] for s in summaries]) for k in keys}
    out["errors"] = sum(s["errors"] for s in summaries)
    out["requests"] = sum(s["requests"] for s in summaries)
    out["first_error"] = next((s["first_error"] for s in summaries if s["first_error"]), None)
    out["rounds"] = summaries
    return out


def workload_result(
    w: Workload,
    graphql_rounds: Sequence[Measured],
    floor_rounds: Sequence[Measured],
    graphql_single: Measured,
    floor_single: Measured,
    workers2: dict[str, Any] | None,
) -> dict[str, Any]:
    """One workload's line of results.json: GraphQL's medians, the floor's, and their ratio."""
    g, f = aggregate(graphql_rounds), aggregate(floor_rounds)
    gs, fs = graphql_single.summary(), floor_single.summary()
    return {
        "title": w.title,
        "rps": g["rps"],
        "p50_ms": g["p50_ms"],
        "p95_ms": g["p95_ms"],
        "p99_ms": g["p99_ms"],
        "statements_per_request": g["statements_per_request"],
        "errors": g["errors"] + gs["errors"],
        "floor_rps": f["rps"],
        "floor_p50_ms": f["p50_ms"],
        "floor_p95_ms": f["p95_ms"],
        "floor_p99_ms": f["p99_ms"],
        "floor_statements_per_request": f["statements_per_request"],
        "floor_errors": f["errors"] + fs["errors"],
        "ratio": round(g["rps"] / f["rps"], 4) if g["rps"] and f["rps"] else None,
        "single_client_p50_ms": gs["p50_ms"],
        "single_client_p95_ms": gs["p95_ms"],
        "floor_single_client_p95_ms": fs["p95_ms"],
        "workers2_rps": (workers2 or {}).get("rps"),
        "server_cpu_ms_per_request": g["server_cpu_ms_per_request"],
        "floor_cpu_ms_per_request": f["server_cpu_ms_per_request"],
        # Floor CPU / GraphQL CPU per answer: what the throughput ratio would be if the server process
        # were the only bottleneck; steadier than req/s when other work shares the cores.
        "cpu_ratio": (
            round(f["server_cpu_ms_per_request"] / g["server_cpu_ms_per_request"], 4)
            if f["server_cpu_ms_per_request"] and g["server_cpu_ms_per_request"]
            else None
        ),
        "detail": {"graphql": g, "floor": f, "graphql_1_client": gs, "floor_1_client": fs,
                   "graphql_workers2": workers2},
    }  # fmt: skip


# --- the run ----------------------------------------------------------------------------------------


def server_env(database_url: str, extra: Sequence[str], redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLC_") and k not in {"REDIS_URL", "PORT"}}
    env.update(
        DATABASE_URL=database_url,
        MLC_ENV="development",
        MLC_DEBUG_SQL_COUNT="1",
        MLC_JWT_SECRET=BENCH_SECRET,
        HOST="127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--server-env expects KEY=VALUE, got {item!r}")
        env[key] = value
    return env


async def run_bench(opts: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    plan = FULL if opts.full else QUICK
    url = bench_database_url(opts.database_url)
    started_at = dt.datetime.now(dt.UTC)
    # Other work on the machine skews every figure: record how busy it was when the run began.
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 1.5:
        print(f"warning: load average {load_before[0]} before starting: other work will skew the figures")
    seed_info = await ensure_seeded(url, procs.log_dir)
    conn = await asyncpg.connect(url)
    try:
        dataset = await load_dataset(conn, BENCH_SECRET, seed=opts.seed)
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    workloads = [w for w in WORKLOADS if not opts.workloads or w.key in opts.workloads]
    costs = cost_timings(dataset)
    bench = Bench(plan, dataset, opts.clients, url.rpartition("/")[2])
    env = server_env(url, opts.server_env, opts.redis_url)

    floor_port, gql_port = free_port(), free_port()
    floor_proc = procs.start("floor", [sys.executable, "-m", "bench.floor", "--port", str(floor_port)], env)
    gql_proc = procs.start(
        "graphql",
        [sys.executable, "-m", "mlc_graph.cli", "serve", "--port", str(gql_port), "--workers", "1"],
        env,
    )
    await wait_ready(f"http://127.0.0.1:{floor_port}/healthz", floor_proc, procs, "floor")
    await wait_ready(f"http://127.0.0.1:{gql_port}/readyz", gql_proc, procs, "graphql")
    graphql = Target("graphql", f"http://127.0.0.1:{gql_port}")
    floor = Target("floor", f"http://127.0.0.1:{floor_port}")
    pids = {"graphql": gql_proc.pid, "floor": floor_proc.pid}
    rss: dict[str, Any] = {"graphql_idle_mb": _mb(procstats.rss_bytes(gql_proc.pid))}
    print(f"{plan.name} run against {url}; logs in {procs.log_dir}", flush=True)

    # Same requests to both: the floor must give the same data, or the comparison means nothing.
    parity: dict[str, str] = {}
    for w in workloads:
        problem = await compare_answers(graphql, floor, w, dataset)
        parity[w.key] = "same" if problem is None else f"differs: {problem}"
        if problem is not None:
            print(f"warning: {w.key} answers differ between GraphQL and the floor: {problem}", flush=True)

    print("warm-up", flush=True)
    for w in workloads:
        for t in (graphql, floor):
            await bench.measure(t, pids[t.name], w, opts.clients, plan.warmup)

    print(f"throughput: {opts.clients} clients, {plan.rounds} round(s) of {plan.duration:g} s", flush=True)
    rounds: dict[tuple[str, str], list[Measured]] = {}
    for _ in range(plan.rounds):
        for w in workloads:
            for t in (graphql, floor):
                rounds.setdefault((w.key, t.name), []).append(
                    await bench.measure(t, pids[t.name], w, opts.clients, plan.duration)
                )

    print("latency: 1 client", flush=True)
    single: dict[tuple[str, str], Measured] = {}
    for w in workloads:
        for t in (graphql, floor):
            single[(w.key, t.name)] = await bench.measure(t, pids[t.name], w, 1, plan.single_duration)

    page_size: dict[str, Any] = {}
    if any(w.key == "W1" for w in workloads):
        print("W1 page size: students(first: 10) vs (first: 100), 1 client", flush=True)
        for first in (10, 100):
            w = dashboard_workload(first)
            for t in (graphql, floor):
                m = await bench.measure(t, pids[t.name], w, 1, plan.page_duration)
                page_size[f"{t.name}_first{first}"] = m.summary()
        page_size["growth"] = _growth(page_size)
    rss["graphql_after_load_mb"] = _mb(procstats.rss_bytes(gql_proc.pid))
    rss["floor_after_load_mb"] = _mb(procstats.rss_bytes(floor_proc.pid))

    workers2: dict[str, Any] = {}
    if not opts.no_workers2:
        procs.stop("graphql")
        gql2 = procs.start(
            "graphql-2w",
            [sys.executable, "-m", "mlc_graph.cli", "serve", "--port", str(gql_port), "--workers", "2"],
            env,
        )
        await wait_ready(f"http://127.0.0.1:{gql_port}/readyz", gql2, procs, "graphql-2w")
        target2 = Target("graphql2w", f"http://127.0.0.1:{gql_port}")
        await asyncio.sleep(1.0)  # both workers listening before load starts
        rss["graphql_workers2_idle_mb"] = [
            _mb(procstats.rss_bytes(p)) for p in procstats.process_tree(gql2.pid)
        ]
        print(
            f"--workers 2: warm-up, then {plan.rounds} round(s) of {plan.workers2_duration:g} s", flush=True
        )
        for w in workloads:
            await bench.measure(target2, gql2.pid, w, opts.clients, plan.warmup)
        runs: dict[str, list[Measured]] = {}
        for _ in range(plan.rounds):
            for w in workloads:
                runs.setdefault(w.key, []).append(
                    await bench.measure(target2, gql2.pid, w, opts.clients, plan.workers2_duration)
                )
        workers2 = {key: aggregate(r) for key, r in runs.items()}
        tree = procstats.process_tree(gql2.pid)
        rss["graphql_workers2_mb"] = [_mb(procstats.rss_bytes(p)) for p in tree]
        procs.stop("graphql-2w")
    procs.stop("floor")

    results = {
        w.key: workload_result(
            w,
            rounds[(w.key, "graphql")],
            rounds[(w.key, "floor")],
            single[(w.key, "graphql")],
            single[(w.key, "floor")],
            workers2.get(w.key),
        )
        for w in workloads
    }
    return {
        "mode": plan.name,
        "date": started_at.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started_at).total_seconds()),
        "machine": {**procstats.machine(str(pg_version)), "load_average_before": load_before},
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
        },
        "git": _git_head(),
        "server_settings": _server_settings(env),
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
    for target in ("graphql", "floor"):
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


def table(run: dict[str, Any]) -> str:
    """The issue 7 table: one row per workload."""
    head = (
        "| workload | GraphQL req/s | floor req/s | ratio | p50 ms | p95 ms | p99 ms | SQL/request (floor) "
        "| 1-client p95 ms (floor) | 2 workers req/s | errors |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = []
    for key, w in run["workloads"].items():
        ratio = f"{w['ratio'] * 100:.0f} %" if w["ratio"] is not None else "-"
        rows.append(
            f"| {key} {w['title']} | {_fmt(w['rps'])} | {_fmt(w['floor_rps'])} | {ratio} "
            f"| {_fmt(w['p50_ms'], 2)} | {_fmt(w['p95_ms'], 2)} | {_fmt(w['p99_ms'], 2)} "
            f"| {_fmt(w['statements_per_request'], 1)} ({_fmt(w['floor_statements_per_request'], 1)}) "
            f"| {_fmt(w['single_client_p95_ms'], 2)} ({_fmt(w['floor_single_client_p95_ms'], 2)}) "
            f"| {_fmt(w['workers2_rps'])} | {w['errors']} / {w['floor_errors']} |"
        )
    return "\n".join([head, *rows])


def cpu_table(run: dict[str, Any]) -> str:
    head = (
        "| workload | GraphQL CPU ms/request | floor CPU ms/request | CPU ratio | GraphQL server CPU "
        "| PostgreSQL CPU | load generator CPU | response KB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = []
    for key, w in run["workloads"].items():
        g = w["detail"]["graphql"]
        rows.append(
            f"| {key} | {_fmt(w['server_cpu_ms_per_request'], 2)} | {_fmt(w['floor_cpu_ms_per_request'], 2)} "
            f"| {_pct(w.get('cpu_ratio'))} | {_pct(g['server_cpu_share'])} | {_pct(g['postgres_cpu_share'])} "
            f"| {_pct(g['client_cpu_share'])} "
            f"| {_fmt((g['response_bytes'] or 0) / 1024, 1)} |"
        )
    return "\n".join([head, *rows])


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def markdown(run: dict[str, Any]) -> str:
    m = run["machine"]
    plan = run["plan"]
    lines = [
        f"## {run['mode']} run, {run['date']} (commit {run['git']})",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']} on the same machine; load average "
        f"{m['load_average_before'][0]} at the start. "
        f"Database `{run['database']}` at district scale. {plan['clients']} concurrent keep-alive clients, "
        f"{plan['rounds']} round(s) of "
        f"{plan['seconds_per_round']:g} s per workload and target (medians), 1-client runs of "
        f"{plan['single_client_seconds']:g} s; the whole run took {run['seconds']} s."
        + (f" Server env: {', '.join(plan['server_env'])}." if plan["server_env"] else "")
        + (" REDIS_URL set." if plan["redis"] else " No REDIS_URL (in-process fallbacks).")
        + (_settings_line(run["server_settings"]) if run.get("server_settings") else ""),
        "",
        table(run),
        "",
        "p50/p95/p99 are GraphQL's at the full client count (latency there follows throughput: "
        "clients / req/s); the 1-client p95 is the latency target. Errors: GraphQL / floor "
        "(any error makes a figure suspect).",
        "",
        "CPU ratio = floor CPU ms / GraphQL CPU ms per answer: the throughput ratio to expect when the "
        "server process is the bottleneck, and steadier than req/s when other work shares the cores.",
        "",
        "Who spent the CPU during the GraphQL rounds (shares of one core; 2 cores in all; PostgreSQL: "
        "the backends serving the bench database):",
        "",
        cpu_table(run),
    ]
    growth = run["page_size"].get("growth")
    if growth:
        ps = run["page_size"]
        lines += [
            "",
            "W1 page size, 1 client, mean ms per request (response KB): students(first: 10) -> (first: 100):",
            "",
        ]
        for target in ("graphql", "floor"):
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
            "Answers compared before the load (3 requests per workload, GraphQL's `data` vs the floor's): "
            + (
                "identical for every workload." if same else "; ".join(f"{k}: {v}" for k, v in parity.items())
            ),
        ]
    rss = run["rss"]
    lines += [
        "",
        f"Server RSS: {rss.get('graphql_idle_mb')} MB idle, {rss.get('graphql_after_load_mb')} MB after load "
        f"(floor {rss.get('floor_after_load_mb')} MB)"
        + (
            f"; with --workers 2, per process of the server's tree: "
            f"{rss.get('graphql_workers2_idle_mb')} MB idle, {rss['graphql_workers2_mb']} MB after load."
            if rss.get("graphql_workers2_mb")
            else "."
        ),
    ]
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
    mode.add_argument("--full", action="store_true", help="about 10 minutes, medians of 3 rounds")
    parser.add_argument("--database-url", help="bench database (default BENCH_DATABASE_URL or .../mlc_bench)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for throughput (32)")
    parser.add_argument("--workloads", nargs="*", choices=[w.key for w in WORKLOADS], help="subset to run")
    parser.add_argument("--no-workers2", action="store_true", help="skip the --workers 2 server")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server and floor (repeatable)")  # fmt: skip
    parser.add_argument("--redis-url", help="give the server REDIS_URL (off by default: rate limits)")
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
    print(table(run))
    print()
    print(cpu_table(run))
    if not opts.no_write:
        write_markdown(BENCH_DIR / "RESULTS.md", run)
        write_json(BENCH_DIR / "results.json", run)
        print(f"\nwrote {BENCH_DIR / 'RESULTS.md'} and {BENCH_DIR / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
