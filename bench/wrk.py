"""Load from wrk (C) instead of Python: prepared request sequences, cycled by bench/wrk_cycle.lua.

On 2 shared cores the Python generator took 10-45 % of a core from the servers (bench/RESULTS.md before
issue 11); wrk spends a few per cent for the same load. What wrk cannot do is read an answer to choose
the next request (W3 follows its cursor), so each (server, workload) gets its sequence up front:
`prepare_sequence` draws the requests the way bench/workloads.py picks them, sends them once, one at a
time, follows W3's cursors from the real answers and checks every answer, then sends the list once more
(what the load will send: caches warm, boards built) and counts the statements of that pass, then
writes the list for the Lua script. The load cycles that list (a few hundred requests) from 32
connections. Every wrk run is bounded by its duration and `--timeout`, and only targets 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.baselines import STATEMENTS_PATH
from bench.load import Target, _check
from bench.workloads import Dataset, Workload

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk_cycle.lua"
RESULT_MARKER = "MLC_WRK_RESULT "
SEQUENCE_LENGTH = 300


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `make bench-setup` installs it (apt-get install wrk)")
    return found


@dataclass(frozen=True, slots=True)
class Sequence:
    """One target's prepared requests for one workload, and what the preparing pass found."""

    target: str
    workload: str
    path: Path  # the Lua file wrk_cycle.lua loads
    requests: int
    statements_per_request: float | None
    response_bytes: int  # mean answer size
    problem: str | None  # the first wrong answer, if any


def _lua_string(text: str) -> str:
    """A Lua long string that cannot end early: its level has more '=' than any run in `text`."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def write_requests(path: Path, requests: list[tuple[str, str, bytes]]) -> None:
    """(url path, token, body) per request, as the Lua table wrk_cycle.lua reads."""
    lines = ["return {"]
    for url_path, token, body in requests:
        lines.append(f"{{{_lua_string(url_path)}, {_lua_string(token)}, {_lua_string(body.decode())}}},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


async def _pool_statements(session: aiohttp.ClientSession, target: Target) -> int:
    async with session.get(target.base_url + STATEMENTS_PATH) as response:
        counted: int = orjson.loads(await response.read())["statements"]
        return counted


async def prepare_sequence(
    target: Target,
    workload: Workload,
    dataset: Dataset,
    out_dir: Path,
    *,
    count: int = SEQUENCE_LENGTH,
    seed: int = 7,
) -> Sequence:
    """Draw `count` requests, send each once (checking it), send them again to count the statements of
    the warm pass (the one the load repeats; a first read may build a board or a plan), write them for wrk."""
    rng, state = random.Random(seed), dict[str, Any]()
    prepared: list[tuple[str, str, bytes]] = []
    size = 0
    problem: str | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            request = workload.pick(dataset, rng, state)
            url, body = target.encode(workload, request)
            status, payload, _ = await _send(session, url, request.token, body)
            found, data = (
                (f"HTTP {status}: {payload[:200]!r}", None) if status != 200 else _check(workload, payload)
            )
            if found is not None and problem is None:
                problem = found
            if workload.follow is not None:
                workload.follow(state, data)
            prepared.append((url, request.token, body))
            size += len(payload)
        statements, samples = await _count_statements(session, target, prepared)
    path = out_dir / f"requests-{target.name}-{workload.key.replace('/', '-')}.lua"
    write_requests(path, [(url.removeprefix(target.base_url), token, body) for url, token, body in prepared])
    return Sequence(
        target.name,
        workload.key,
        path,
        count,
        round(statements / samples, 2) if samples else None,
        round(size / count),
        problem,
    )


async def _send(session: aiohttp.ClientSession, url: str, token: str, body: bytes) -> tuple[int, bytes, Any]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.read(), response.headers


async def _count_statements(
    session: aiohttp.ClientSession, target: Target, prepared: list[tuple[str, str, bytes]]
) -> tuple[int, int]:
    """(statements, answers counted) over one more pass of the prepared requests."""
    statements = samples = 0
    pool_before = await _pool_statements(session, target) if target.is_postgraphile else 0
    for url, token, body in prepared:
        _, payload, headers = await _send(session, url, token, body)
        counted = target.statements(payload, headers)
        if counted is not None:
            statements, samples = statements + counted, samples + 1
    if target.is_postgraphile:
        statements, samples = await _pool_statements(session, target) - pool_before, len(prepared)
    return statements, samples


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured (its own figures, and the CPU wrk itself used)."""

    target: str
    workload: str
    clients: int
    requests: int
    errors: int
    elapsed: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    response_bytes: int
    client_cpu: float
    statements_per_request: float | None
    first_error: str | None

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "workload": self.workload,
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
            "statements_per_request": self.statements_per_request,
            "response_bytes": self.response_bytes,
            "client_cpu_share": round(self.client_cpu / self.elapsed, 3) if self.elapsed > 0 else 0.0,
            "first_error": self.first_error,
        }


def parse_result(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            parsed: dict[str, Any] = orjson.loads(line.removeprefix(RESULT_MARKER))
            return parsed
    raise RuntimeError(f"wrk printed no result line:\n{output[-2000:]}")


async def run_wrk(
    target: Target, sequence: Sequence, *, clients: int, duration: float, request_timeout: float = 10.0
) -> WrkResult:
    """Drive `sequence` at `target` from `clients` connections for `duration` seconds."""
    threads = max(1, min(2, clients))
    argv = [
        wrk_path(), f"-t{threads}", f"-c{clients}", f"-d{duration:g}s", f"--timeout={request_timeout:g}s",
        "-s", str(LUA_SCRIPT), target.base_url,
    ]  # fmt: skip
    env = {**os.environ, "MLC_WRK_REQUESTS": str(sequence.path)}
    out, cpu = await asyncio.to_thread(_measured_run, argv, env, duration + request_timeout + 30)
    got = parse_result(out)
    errors = got["socket_errors"] + got["bad_status"] + got["answer_errors"]
    return WrkResult(
        target=target.name,
        workload=sequence.workload,
        clients=clients,
        requests=got["requests"],
        errors=errors,
        elapsed=got["duration_us"] / 1e6,
        p50_ms=got["p50_us"] / 1000,
        p95_ms=got["p95_us"] / 1000,
        p99_ms=got["p99_us"] / 1000,
        mean_ms=got["mean_us"] / 1000,
        response_bytes=sequence.response_bytes,
        client_cpu=cpu,
        statements_per_request=sequence.statements_per_request,
        first_error=got["first_problem"] or None,
    )


def _measured_run(argv: list[str], env: dict[str, str], limit: float) -> tuple[str, float]:
    """Run wrk to the end; (output, CPU seconds wrk used), from wait4's rusage of that one child."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = _read_all(proc, limit)
    # Reaped here, not by Popen, so that wait4 hands over the child's own rusage.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out[-2000:]}")
    return out, usage.ru_utime + usage.ru_stime


def _read_all(proc: subprocess.Popen[bytes], limit: float) -> str:
    """wrk's output; kills it past `limit` seconds (it stops by itself after its duration)."""
    assert proc.stdout is not None
    timer = threading.Timer(limit, proc.kill)
    timer.start()
    try:
        with proc.stdout:
            return proc.stdout.read().decode(errors="replace")
    finally:
        timer.cancel()
