"""`python -m bench.write_bench`: the write path's figures (docs/WRITES.md).

1. importStudents with a 10,000-row roster (parse + validate, then the mutation: lock, count, 20 chunks
   of 500 in one transaction).
2. submitScore from many concurrent students: writes/s and latency percentiles for first submissions,
   then the same keys again (the retry path: one conflicting claim and a read, nothing written).

Runs in-process against a throwaway database on 127.0.0.1 (created, migrated, dropped), executing the
same GraphQL documents the API serves, without HTTP: HTTP and auth overhead is bench.run's subject.
Bounded: a fixed number of operations, each phase under a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from graphql import DocumentNode, ExecutionResult, execute, parse

from mlc_graph.domain.roster import parse_roster
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import Executor, QueryStats, create_pool
from mlc_graph.platform.migrate import migrate
from resolvers.context import make_context
from resolvers.relay import encode_global_id
from resolvers.schema import schema

IMPORT = """mutation Import($input: ImportStudentsInput!) {
  importStudents(input: $input) { created skipped errors { row column message } } }"""
SUBMIT = """mutation Submit($input: SubmitScoreInput!) {
  submitScore(input: $input) { score { id } bestScore { score } rank } }"""
PHASE_TIMEOUT_SECONDS = 300.0

# Bench fixtures: plain INSERTs of the rows the phases need (the bench owns its throwaway database).
INSERT_ORG = "INSERT INTO organizations (name, tier, seat_count) VALUES ($1, 'ENSEMBLE', $2) RETURNING id"
INSERT_TEACHER = (
    "INSERT INTO teachers (org_id, first_name, last_name) VALUES ($1, 'Bench', 'Teacher') RETURNING id"
)
INSERT_CATALOGUE = """
WITH c AS (INSERT INTO categories (name) VALUES ('Bench') RETURNING id),
     l AS (INSERT INTO levels (name, position) VALUES ('Bench', 1) RETURNING id)
INSERT INTO games (title, category_id, level_id, difficulty, status, min_score, max_score)
SELECT 'Game ' || g, c.id, l.id, 'BEGINNER', 'live', 0, 100000 FROM c, l, generate_series(1, $1) AS g
RETURNING id
"""
SELECT_STUDENTS = "SELECT id FROM students WHERE org_id = $1 ORDER BY id LIMIT $2"


def roster(rows: int) -> str:
    lines = ["first_name,last_name,username,email"]
    lines += [f"First{n},Last{n:05d},student{n:05d},student{n}@example.test" for n in range(rows)]
    return "\n".join(lines) + "\n"


@functools.cache
def _parsed(document: str) -> DocumentNode:
    return parse(document)


async def run_document(
    pool: asyncpg.Pool, document: str, variables: dict[str, Any], viewer: Principal
) -> tuple[ExecutionResult, QueryStats]:
    stats = QueryStats()
    context = make_context(Settings(), Executor(pool, stats), viewer)
    # The server parses each distinct document once (mlc_graph.execution.pipeline); so does the bench.
    result = execute(schema._schema, _parsed(document), context_value=context, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    if result.errors:
        raise RuntimeError(f"bench operation failed: {result.errors}")
    return result, stats


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def bench_import(pool: asyncpg.Pool, rows: int) -> tuple[int, int, list[int]]:
    org = await pool.fetchval(INSERT_ORG, "Import bench", rows + 100)
    teacher = await pool.fetchval(INSERT_TEACHER, org)
    text = roster(rows)
    started = time.perf_counter()
    parsed = parse_roster(text)
    parse_seconds = time.perf_counter() - started
    assert not parsed.errors
    variables = {"input": {"teacherId": encode_global_id("Teacher", teacher), "csv": text}}
    viewer = Principal(Role.TEACHER, teacher, org, "bench")
    started = time.perf_counter()
    result, stats = await asyncio.wait_for(
        run_document(pool, IMPORT, variables, viewer), PHASE_TIMEOUT_SECONDS
    )
    seconds = time.perf_counter() - started
    assert result.data is not None
    payload = result.data["importStudents"]
    print(f"import {rows:,} rows ({len(text) / 1024:.0f} KiB CSV)")
    print(f"  parse + validate only     {parse_seconds * 1000:8.1f} ms")
    print(f"  importStudents mutation   {seconds * 1000:8.1f} ms  ({rows / seconds:,.0f} rows/s)")
    print(
        f"  created {payload['created']:,}, skipped {payload['skipped']}, SQL statements {stats.statements}"
    )
    # The same roster again: every username exists, nothing is created (the re-sent-file case).
    started = time.perf_counter()
    again, _ = await run_document(pool, IMPORT, variables, viewer)
    assert again.data is not None and again.data["importStudents"]["skipped"] == rows
    print(f"  same roster again         {(time.perf_counter() - started) * 1000:8.1f} ms  (all skipped)")
    students = [r["id"] for r in await pool.fetch(SELECT_STUDENTS, org, 2000)]
    return org, teacher, students


async def bench_submissions(
    pool: asyncpg.Pool, org: int, students: list[int], games: list[int], total: int, concurrency: int
) -> None:
    rng = random.Random(4)  # reproducible load
    plays = [
        (rng.choice(students), rng.choice(games), rng.randrange(0, 100_000), uuid.uuid4().hex)
        for _ in range(total)
    ]

    async def phase(name: str) -> None:
        latencies: list[float] = []
        statements: list[int] = []
        sql_seconds: list[float] = []
        queue = list(reversed(plays))

        async def client() -> None:
            while queue:
                student, game, score, key = queue.pop()
                variables = {
                    "input": {
                        "gameId": encode_global_id("Game", game),
                        "score": score,
                        "stage": "CHALLENGE",
                        "idempotencyKey": key,
                    }
                }
                started = time.perf_counter()
                _, stats = await run_document(
                    pool, SUBMIT, variables, Principal(Role.STUDENT, student, org, "b")
                )
                latencies.append(time.perf_counter() - started)
                statements.append(stats.statements)
                sql_seconds.append(stats.seconds)

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(concurrency))), PHASE_TIMEOUT_SECONDS)
        seconds = time.perf_counter() - started
        p50, p95, p99 = (percentile(latencies, share) * 1000 for share in (0.5, 0.95, 0.99))
        print(
            f"  {name:<22} {total / seconds:8,.0f} /s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms"
            f"   p99 {p99:6.1f} ms   SQL/op {statistics.mean(statements):.1f}"
            f" ({statistics.mean(sql_seconds) * 1000:.1f} ms in statements)"
        )

    print(f"submitScore: {total:,} plays, {concurrency} concurrent clients, {len(students)} students")
    await phase("first submissions")
    await phase("retries (same keys)")
    rows = await pool.fetchval("SELECT count(*) FROM scores")
    print(f"  scores rows written: {rows:,} (one per play: retries wrote nothing)")


async def main_async(opts: argparse.Namespace) -> None:
    base = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    prefix, _, _ = base.rpartition("/")
    name = f"mlc_write_bench_{os.getpid()}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{prefix}/{name}"
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await create_pool(url, PoolSettings(min_size=opts.concurrency, max_size=opts.concurrency))
        try:
            org, _, students = await bench_import(pool, opts.rows)
            games = [r["id"] for r in await pool.fetch(INSERT_CATALOGUE, 20)]
            await bench_submissions(pool, org, students, games, opts.submissions, opts.concurrency)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="roster rows to import (default 10,000)")
    parser.add_argument("--submissions", type=int, default=3_000, help="score submissions (default 3,000)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent clients = pool size (20)")
    opts = parser.parse_args(argv)
    asyncio.run(main_async(opts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
