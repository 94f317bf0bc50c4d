"""`python -m bench.server_profile W2`: one workload against the production server, profiled or probed.

Starts MLC Graph as `make bench` judges it (bench.run.server_env: production, Redis, tier limits raised)
on the seeded bench database, prepares the workload's request sequence as bench.wrk does, warms up, then:

- `--spy FILE`: samples the server with py-spy (`pip install py-spy`) for the whole 32-client run and
  writes its raw (collapsed) stacks to FILE, then prints the functions with the most samples of their
  own (docs/PERFORMANCE.md's profiles come from this);
- always: the run's req/s, and a 1-client run's p50/p95/p99;
- the server's garbage-collector pauses above 2 ms (a `gc.callbacks` probe loaded into it with
  `sitecustomize`), counted by generation with the longest: the probe that found the per-request
  reference cycle (tests/execution/test_request_garbage.py).

    .venv/bin/python -m bench.server_profile W1 --seconds 6
    .venv/bin/python -m bench.server_profile W4 --spy /tmp/w4.txt --seconds 15

Run it alone (`flock /work/tools/bench.lock ...` on a shared machine): it measures the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from bench import wrk
from bench.load import Target
from bench.run import (
    BENCH_SECRET,
    ROOT,
    Processes,
    bench_database_url,
    free_port,
    graphql_argv,
    server_env,
    wait_ready,
)
from bench.workloads import BY_KEY, load_dataset

GC_PROBE = """
import gc, sys, time
_started = [0.0]
def _probe(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _started[0]) * 1000
    if ms > 2:
        sys.stderr.write(f"mlc-gc-pause gen{info['generation']} {ms:.1f} collected={info['collected']}\\n")
gc.callbacks.append(_probe)
"""


def top_self_samples(raw: Path, limit: int = 30) -> list[tuple[float, str]]:
    """Share of samples per leaf frame in py-spy's raw output ("frame;frame;leaf count" lines)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stack.split(";")[-1]] += int(n)
    total = sum(counts.values()) or 1
    return [(100 * n / total, frame) for frame, n in counts.most_common(limit)]


def gc_pauses(log: str) -> dict[str, tuple[int, float]]:
    """Per generation: how many pauses above 2 ms the probe logged, and the longest (ms)."""
    found: dict[str, tuple[int, float]] = {}
    for line in log.splitlines():
        if line.startswith("mlc-gc-pause "):
            _, gen, ms, _ = line.split(" ", 3)
            count, longest = found.get(gen, (0, 0.0))
            found[gen] = (count + 1, max(longest, float(ms)))
    return found


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--spy needs py-spy: .venv/bin/pip install py-spy")
    return found


async def _sequence(target: Target, key: str, database_url: str, out: Path) -> wrk.Sequence:
    conn = await asyncpg.connect(database_url)
    try:
        dataset = await load_dataset(conn, BENCH_SECRET)
    finally:
        await conn.close()
    sequence = await wrk.prepare_sequence(target, BY_KEY[key], dataset, out)
    await wrk.run_wrk(target, sequence, clients=32, duration=3)  # warm-up: plans, caches, pools
    return sequence


def profile(key: str, seconds: float, spy: Path | None, redis_url: str | None) -> None:
    py_spy = _py_spy() if spy is not None else None
    database_url = bench_database_url(None)
    probe_dir = Path(tempfile.mkdtemp(prefix="mlc-gc-probe-"))
    (probe_dir / "sitecustomize.py").write_text(GC_PROBE)
    env = server_env(database_url, [], redis_url, "mlc-profile:")
    env["PYTHONPATH"] = f"{probe_dir}:{ROOT}"
    port = free_port()
    target = Target("graphql", f"http://127.0.0.1:{port}")
    procs = Processes(probe_dir)
    try:
        # One worker serves in the process itself: its pid is the one to sample.
        proc = procs.start("graphql", graphql_argv(port, 1), env)
        asyncio.run(wait_ready(target.base_url + "/readyz", proc, procs, "graphql"))
        sequence = asyncio.run(_sequence(target, key, database_url, probe_dir))
        sampler = None
        if py_spy is not None and spy is not None:
            argv = [py_spy, "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-r", "250"]
            argv += ["-f", "raw", "-o", str(spy), "--nonblocking"]
            sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loaded = asyncio.run(wrk.run_wrk(target, sequence, clients=32, duration=seconds))
        if sampler is not None:
            sampler.wait(timeout=seconds + 30)
        single = asyncio.run(wrk.run_wrk(target, sequence, clients=1, duration=seconds))
    finally:
        procs.stop_all()
    log_path = probe_dir / "graphql.log"
    print(f"{key}: {loaded.requests / loaded.elapsed:.0f} req/s at 32 clients, errors {loaded.errors}")
    print(f"{key}: 1 client p50 {single.p50_ms:.2f} p95 {single.p95_ms:.2f} p99 {single.p99_ms:.2f} ms")
    for gen, (count, longest) in sorted(gc_pauses(log_path.read_text(errors="replace")).items()):
        print(f"gc pauses above 2 ms, {gen}: {count}, longest {longest:.1f} ms")
    if spy is not None and spy.exists():
        for share, frame in top_self_samples(spy):
            print(f"{share:5.1f}% {frame}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("workload", choices=sorted(BY_KEY))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spy", type=Path, default=None, help="write py-spy's raw samples here")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true")
    opts = parser.parse_args(argv)
    profile(opts.workload, opts.seconds, opts.spy, None if opts.no_redis else opts.redis_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
