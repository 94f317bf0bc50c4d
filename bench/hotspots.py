"""`python -m bench.hotspots W1`: where a workload's CPU goes, in-process, under cProfile.

Runs the workload's document through graphql-core's `execute` on the real schema and the bench
database (no HTTP: the executor and resolvers are what issue 7 is about), with the same ids and
tokens the load generator would send, and prints CPU ms per request and the top frames. Point it at
the database `bench.run` seeded (`mlc_bench`); it never writes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import random
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from graphql import ExecutionResult, execute, parse

from bench.run import BENCH_SECRET, bench_database_url
from bench.workloads import BY_KEY, Dataset, Workload, load_dataset
from mlc_graph.auth import decode_token
from mlc_graph.config import PoolSettings, Settings
from mlc_graph.context import make_context
from mlc_graph.db import Executor, QueryStats, create_pool


async def _one(pool: asyncpg.Pool, settings: Settings, workload: Workload, ds: Dataset, rng: random.Random,
               state: dict[str, Any], document: Any) -> int:  # fmt: skip
    from resolvers.schema import schema

    request = workload.pick(ds, rng, state)
    context = make_context(settings, Executor(pool, QueryStats()), decode_token(BENCH_SECRET, request.token))
    result = execute(schema._schema, document, context_value=context, variable_values=request.variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    if result.errors:
        raise RuntimeError(f"{workload.key} failed: {result.errors[0]}")
    if workload.follow is not None:
        workload.follow(state, result.data)
    return context.stats.statements


async def profile(key: str, requests: int, top: int, url: str) -> str:
    workload = BY_KEY[key]
    settings = Settings(database_url=url, jwt_secret=BENCH_SECRET)
    pool = await create_pool(url, PoolSettings(min_size=1, max_size=4))
    try:
        async with pool.acquire() as conn:
            ds = await load_dataset(conn, BENCH_SECRET)
        document = parse(workload.document)
        rng, state = random.Random(7), dict[str, Any]()
        for _ in range(5):  # warm caches (prepared statements, imports) before measuring
            await _one(pool, settings, workload, ds, rng, state, document)
        profiler = cProfile.Profile()
        cpu, statements = time.process_time(), 0
        profiler.enable()
        for _ in range(requests):
            statements += await _one(pool, settings, workload, ds, rng, state, document)
        profiler.disable()
        cpu = time.process_time() - cpu
    finally:
        await pool.close()
    out = io.StringIO()
    out.write(
        f"{key}: {requests} requests, {cpu / requests * 1000:.2f} ms CPU per request under cProfile "
        f"(which inflates it), {statements / requests:.1f} SQL statements per request\n"
    )
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(BY_KEY))
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--top", type=int, default=25, help="frames to print per ordering")
    parser.add_argument("--database-url", help="default: the bench database (mlc_bench)")
    args = parser.parse_args(argv)
    print(asyncio.run(profile(args.workload, args.requests, args.top, bench_database_url(args.database_url))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
