"""`python -m bench.profile`: CPU per request of graphql-core vs the compiled executor, in-process.

No HTTP and no concurrency: each workload's document is parsed and validated once (as the pipeline's
cache does), then executed N times per executor on the seeded bench database (`mlc_bench`, seeded by
`make bench`; read only), each request with a fresh context and the response serialized with orjson.
Prints CPU ms per request (process time: this process only, PostgreSQL's CPU is not in it), SQL
statements per request and, with --profile, the top frames of cProfile for one executor. For a
sampling profile without cProfile's overhead: `py-spy record --format raw -- python -m bench.profile`.

    .venv/bin/python -m bench.profile --requests 50
    .venv/bin/python -m bench.profile --workloads W1 --profile compiled
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from graphql import ExecutionResult, OperationDefinitionNode, execute, parse, validate

from bench.workloads import BY_KEY, Dataset, Workload, dashboard_workload, load_dataset
from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.platform.auth import decode_token
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import Executor, QueryStats, create_pool
from resolvers.batch import BATCH_RESOLVERS
from resolvers.context import make_context
from resolvers.schema import schema

BENCH_SECRET = "mlc-bench-secret-0123456789abcdef0123456789"  # noqa: S105 - bench.run's token secret
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/mlc_bench"
WARMUP = 5


@dataclass(slots=True)
class Figures:
    cpu_ms: float
    wall_ms: float
    statements: float
    response_kb: float


async def _one(
    pool: asyncpg.Pool,
    runner: CompiledExecutor | None,
    workload: Workload,
    document: Any,
    operation: OperationDefinitionNode,
    variables: dict[str, Any],
    token: str,
) -> tuple[bytes, int]:
    stats = QueryStats()
    context = make_context(Settings(), Executor(pool, stats), decode_token(BENCH_SECRET, token))
    if runner is None:
        result = execute(schema._schema, document, None, context, variables, workload.operation_name)
        if not isinstance(result, ExecutionResult):
            result = await result
    else:
        result = await runner.execute(document, operation, context, variables, workload.operation_name)
    if result.errors:
        raise RuntimeError(f"{workload.key}: {result.errors[0].message}")
    return orjson.dumps({"data": result.data}), stats.statements


async def measure(
    pool: asyncpg.Pool,
    dataset: Dataset,
    workload: Workload,
    executor_name: str,
    requests: int,
    profile: cProfile.Profile | None = None,
) -> Figures:
    """Median CPU and wall time per request over `requests` requests, after a short warm-up."""
    document = parse(workload.document)
    assert not validate(schema._schema, document)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    runner = (
        CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
        if executor_name == "compiled"
        else None
    )
    rng = random.Random(11)
    state: dict[str, Any] = {}
    cpu: list[float] = []
    wall: list[float] = []
    statements: list[int] = []
    sizes: list[int] = []
    for i in range(requests + WARMUP):
        request = workload.pick(dataset, rng, state)
        measured = i >= WARMUP
        started_cpu, started = time.process_time(), time.perf_counter()
        if profile is not None and measured:
            profile.enable()
        body, count = await _one(
            pool, runner, workload, document, operation, request.variables, request.token
        )
        if profile is not None and measured:
            profile.disable()
        if measured:
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started)
            statements.append(count)
            sizes.append(len(body))
        if workload.follow is not None:
            workload.follow(state, orjson.loads(body)["data"])
    return Figures(
        statistics.median(cpu) * 1000,
        statistics.median(wall) * 1000,
        statistics.mean(statements),
        statistics.mean(sizes) / 1024,
    )


def _workloads(keys: Sequence[str]) -> list[Workload]:
    chosen: list[Workload] = []
    for key in keys:
        if key.startswith("W1/first"):
            chosen.append(dashboard_workload(int(key.removeprefix("W1/first"))))
        else:
            chosen.append(BY_KEY[key])
    return chosen


async def main_async(opts: argparse.Namespace) -> None:
    pool = await create_pool(opts.database_url, PoolSettings(min_size=2, max_size=4))
    try:
        async with pool.acquire() as conn:
            dataset = await load_dataset(conn, BENCH_SECRET)
        print(f"{'workload':<14} {'executor':<13} {'CPU ms/req':>10} {'wall ms':>8} {'SQL/req':>8} {'KB':>6}")
        for workload in _workloads(opts.workloads.split(",")):
            baseline: float | None = None
            for name in opts.executors.split(","):
                profile = cProfile.Profile() if opts.profile == name else None
                figures = await measure(pool, dataset, workload, name, opts.requests, profile)
                speedup = f"  x{baseline / figures.cpu_ms:.1f}" if baseline else ""
                baseline = baseline or figures.cpu_ms
                print(
                    f"{workload.key:<14} {name:<13} {figures.cpu_ms:>10.2f} {figures.wall_ms:>8.2f} "
                    f"{figures.statements:>8.1f} {figures.response_kb:>6.1f}{speedup}"
                )
                if profile is not None:
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats(opts.sort).print_stats(opts.top)
                    print(out.getvalue())
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="graphql-core vs compiled executor, CPU per request")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W1/first10,W1/first100")
    parser.add_argument("--executors", default="graphql-core,compiled")
    parser.add_argument("--profile", choices=("graphql-core", "compiled"), default=None)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=25)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
