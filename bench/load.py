"""The load generator: N keep-alive clients on 127.0.0.1, bounded by request count and by time.

One client code path serves both targets (the GraphQL server and the floor) so the comparison pays the
same client costs. Each request's latency is recorded; a run reports requests/s, p50/p95/p99, errors,
SQL statements per request (the server's `extensions.sqlStatements`, the floor's `X-SQL-Statements`
header) and the generator's own CPU time, because on 2 cores the generator competes with the server.

Responses are not fully parsed unless needed (W3 reads its next cursor, and each client checks its
first responses in full): a full parse of every W1 answer would cost the generator more CPU than
the byte checks that catch errors.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bench.baselines import DIALECTS, row_ids
from bench.workloads import Dataset, Request, Workload

STATEMENTS_HEADER = "X-SQL-Statements"
_SQL_MARKER = b'"sqlStatements":'
_ERRORS_MARKER = b'"errors":'
# Each client parses this many of its first answers in full to check them.
CHECKED_PER_CLIENT = 3


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; 0.0 for no values."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def sql_statements_in_body(body: bytes) -> int | None:
    """`extensions.sqlStatements` of a GraphQL answer without parsing it (extensions come last)."""
    at = body.rfind(_SQL_MARKER)
    if at < 0:
        return None
    digits = bytearray()
    for byte in body[at + len(_SQL_MARKER) :]:
        if 48 <= byte <= 57:
            digits.append(byte)
        elif digits or byte not in b" ":
            break
    return int(digits) if digits else None


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: `graphql` posts the document, `floor` posts variables to the workload's route."""

    name: str
    base_url: str

    def __post_init__(self) -> None:
        host = urlsplit(self.base_url).hostname
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError(f"bench load only targets this machine, not {host!r}")

    @property
    def is_graphql(self) -> bool:
        return self.name.startswith("graphql")

    @property
    def is_postgraphile(self) -> bool:
        return self.name in DIALECTS

    def encode(self, workload: Workload, request: Request) -> tuple[str, bytes]:
        if self.is_postgraphile:
            body = {
                "query": DIALECTS[self.name].documents()[workload.key],
                "variables": row_ids(request.variables),
                "operationName": workload.operation_name,
            }
            return self.base_url + "/graphql", orjson.dumps(body)
        if self.is_graphql:
            body = {
                "query": workload.document,
                "variables": request.variables,
                "operationName": workload.operation_name,
            }
            return self.base_url + "/graphql", orjson.dumps(body)
        return self.base_url + workload.floor_path, orjson.dumps(workload.floor_body(request))

    def statements(self, body: bytes, headers: Any) -> int | None:
        """The statements one answer says it ran; None for PostGraphile (its pool counts them)."""
        if self.is_postgraphile:
            return None
        if self.is_graphql:
            return sql_statements_in_body(body)
        raw = headers.get(STATEMENTS_HEADER)
        return int(raw) if raw is not None else None


@dataclass(slots=True)
class LoadResult:
    target: str
    workload: str
    clients: int
    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, successful requests
    statements: int = 0
    statement_samples: int = 0
    response_bytes: int = 0
    client_cpu: float = 0.0
    first_error: str | None = None

    def _pct(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000

    @property
    def rps(self) -> float:
        return (self.requests - self.errors) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def statements_per_request(self) -> float | None:
        return self.statements / self.statement_samples if self.statement_samples else None

    @property
    def client_cpu_share(self) -> float:
        """Generator CPU seconds per wall second (1.0 = one full core)."""
        return self.client_cpu / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        ok = self.requests - self.errors
        return {
            "target": self.target,
            "workload": self.workload,
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(ordered, 50) * 1000, 3),
            "p95_ms": round(percentile(ordered, 95) * 1000, 3),
            "p99_ms": round(percentile(ordered, 99) * 1000, 3),
            "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3) if ordered else 0.0,
            "statements_per_request": (
                None if self.statements_per_request is None else round(self.statements_per_request, 2)
            ),
            "response_bytes": round(self.response_bytes / ok) if ok else 0,
            "client_cpu_share": round(self.client_cpu_share, 3),
            "first_error": self.first_error,
        }


def _check(workload: Workload, body: bytes) -> tuple[str | None, Any]:
    """(problem or None, the answer's data) for an answer parsed in full."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "answer is not JSON", None
    if not isinstance(answer, dict) or answer.get("errors"):
        return f"errors: {str(answer)[:300]}", None
    data = answer.get("data")
    if not isinstance(data, dict) or data.get(workload.root_field) is None:
        return f"data.{workload.root_field} is null: {str(answer)[:300]}", data
    return None, data


async def run_load(
    target: Target,
    workload: Workload,
    dataset: Dataset,
    *,
    clients: int,
    duration: float,
    max_requests: int,
    seed: int = 7,
    request_timeout: float = 30.0,
) -> LoadResult:
    """Run `clients` concurrent clients until `duration` seconds pass or `max_requests` were sent."""
    result = LoadResult(target=target.name, workload=workload.key, clients=clients)
    headers_by_token: dict[str, dict[str, str]] = {}
    remaining = max_requests

    def note_error(problem: str) -> None:
        result.errors += 1
        if result.first_error is None:
            result.first_error = problem

    async def client(session: aiohttp.ClientSession, index: int, deadline: float) -> None:
        nonlocal remaining
        rng = random.Random(seed * 1_000_003 + index)
        state: dict[str, Any] = {}
        checked = 0
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            request = workload.pick(dataset, rng, state)
            url, body = target.encode(workload, request)
            headers = headers_by_token.get(request.token)
            if headers is None:
                headers = {
                    "Authorization": f"Bearer {request.token}",
                    "Content-Type": "application/json",
                    # Both sides answer uncompressed: the comparison is execution, and on 127.0.0.1
                    # compression only costs CPU (aiohttp's client would otherwise offer br/gzip).
                    "Accept-Encoding": "identity",
                }
                headers_by_token[request.token] = headers
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
                    response_headers = response.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.requests += 1
                note_error(f"{type(exc).__name__}: {exc}")
                continue
            latency = time.perf_counter() - started
            result.requests += 1
            if status != 200:
                note_error(f"HTTP {status}: {payload[:300]!r}")
                continue
            if workload.follow is not None or checked < CHECKED_PER_CLIENT:
                checked += 1
                problem, data = _check(workload, payload)
                if workload.follow is not None:
                    workload.follow(state, data)
                if problem is not None:
                    note_error(problem)
                    continue
            elif _ERRORS_MARKER in payload:
                note_error(f"errors: {payload[:300]!r}")
                continue
            result.latencies.append(latency)
            result.response_bytes += len(payload)
            count = target.statements(payload, response_headers)
            if count is not None:
                result.statements += count
                result.statement_samples += 1

    connector = aiohttp.TCPConnector(limit=clients, force_close=False, use_dns_cache=False)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        cpu_started = time.process_time()
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(client(session, i, deadline) for i in range(clients)))
        result.elapsed = time.perf_counter() - started
        result.client_cpu = time.process_time() - cpu_started
    return result


def first_difference(left: Any, right: Any, path: str = "data") -> str | None:
    """The path of the first place two JSON values differ, or None when they are equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        if list(left) != list(right):
            return f"{path}: keys {list(left)} != {list(right)}"
        for key in left:
            found = first_difference(left[key], right[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path}: {len(left)} items != {len(right)}"
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if left == right else f"{path}: {str(left)[:80]!r} != {str(right)[:80]!r}"


async def compare_answers(
    first: Target, second: Target, workload: Workload, dataset: Dataset, samples: int = 3, seed: int = 7
) -> str | None:
    """Send the same requests to both targets; the first difference in their `data`, or None."""
    rng, state = random.Random(seed), dict[str, Any]()
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            request = workload.pick(dataset, rng, state)
            answers = []
            for target in (first, second):
                url, body = target.encode(workload, request)
                headers = {"Authorization": f"Bearer {request.token}", "Content-Type": "application/json"}
                async with session.post(url, data=body, headers=headers) as response:
                    answers.append(orjson.loads(await response.read()))
            problem = first_difference(answers[0].get("data"), answers[1].get("data"))
            if problem is not None or answers[0].get("errors") or answers[1].get("errors"):
                errors = answers[0].get("errors") or answers[1].get("errors")
                return problem or f"errors: {str(errors)[:200]}"
            if workload.follow is not None:
                workload.follow(state, answers[0]["data"])
    return None
