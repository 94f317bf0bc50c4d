"""Scale-out figures for docs/SCALING.md: PgBouncer's cost per request, connections, what a Redis shard holds.

    flock /work/tools/bench.lock .venv/bin/python -m bench.scaleout [--seconds 8] [--concurrency 8]

1. A fresh database with the demo seed (1 organization, 3 teachers, 60 students, 200 games). For each
   of three set-ups, one `mlc-graph serve` process (one worker, no Redis, request log off) answers a
   closed loop of `--concurrency` clients for `--seconds`, cycling the teacher dashboard, a game library
   page and a student's scores: direct with asyncpg's statement cache (100), direct without it (0), and
   through Debian's PgBouncer in transaction mode (pool 10) without it. PgBouncer 1.18 cannot run with
   the cache on (tests/platform/test_pgbouncer.py shows it failing), so that row does not exist.
   Printed: requests, req/s, CPU ms per request of the server, of PgBouncer and of the PostgreSQL
   backends of that database (from /proc), and the PostgreSQL connections open at the end of the load.
2. A six-node Redis Cluster (tests/support/redis_cluster.py): `--users` users of 20 organizations
   admitted once each (a session and a rate window each), and `--lines` score events on 40 games (three
   board lines each). Printed per primary: keys and used_memory above the empty node, and the bytes per
   user and per board line they come to.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import redis as redis_sync

from bench.procstats import cpu_delta, postgres_backends_cpu, tree_cpu_seconds
from bench.run import BENCH_TIER_OVERRIDES, Processes, free_port, graphql_argv, wait_ready
from mlc_graph.domain.tiers import TierTable
from mlc_graph.guards.quotas import Quotas
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.platform.auth import Principal, Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET, Settings
from mlc_graph.platform.events import ScoreCommitted
from mlc_graph.platform.migrate import migrate
from mlc_graph.realtime.services import Realtime
from mlc_graph.tools.seed import DEMO, seed
from tests.support.database import ADMIN_URL, url_for
from tests.support.pgbouncer import PgBouncer
from tests.support.redis_cluster import redis_cluster

DASHBOARD = (
    "{ viewer { teacher { students(first: 20) { totalCount edges { node { id displayName "
    "assignments(first: 5) { edges { node { dueDate game { title } } } } } } } } } }"
)
LIBRARY = "{ games(first: 20) { edges { node { id title category { name } level { name } } } } }"
SCORES = "{ viewer { student { scores(first: 10) { edges { node { score } } } } } }"


async def _prepare(name: str) -> tuple[int, int, list[int]]:
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    conn = await asyncpg.connect(url_for(name))
    try:
        await migrate(conn)
        await seed(conn, DEMO, progress=False)
        row = await conn.fetchrow("SELECT id, org_id FROM teachers ORDER BY id LIMIT 1")
        assert row is not None
        teacher, org = int(row["id"]), int(row["org_id"])
        rows = await conn.fetch("SELECT id FROM students WHERE teacher_id = $1", teacher)
        students = [int(r["id"]) for r in rows]
    finally:
        await conn.close()
    return org, teacher, students


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _server_env(database_url: str, direct_url: str, cache: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MLC_DIRECT_DATABASE_URL": direct_url,
        "MLC_DB_STATEMENT_CACHE_SIZE": str(cache),
        "MLC_DB_POOL_MAX": "10",
        "MLC_ENV": "development",
        "MLC_REQUEST_LOG": "off",
        # Limits above the load: on a quiet machine the hourly quotas of the demo's tier run out in seconds.
        "MLC_TIER_OVERRIDES": BENCH_TIER_OVERRIDES,
    }
    env.pop("REDIS_URL", None)
    return env


async def _load(
    port: int, tokens: list[tuple[str, str]], seconds: float, concurrency: int
) -> tuple[int, int]:
    done = errors = 0
    until = time.monotonic() + seconds
    plan = itertools.cycle(tokens)
    async with aiohttp.ClientSession() as session:

        async def client() -> None:
            nonlocal done, errors
            while time.monotonic() < until:
                token, query = next(plan)
                async with session.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": query},
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    body = await response.json()
                done += 1
                if response.status != 200 or body.get("errors"):
                    errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, errors


async def _connections(database: str) -> int:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
            database,
        )
        return count
    finally:
        await admin.close()


async def pgbouncer_figures(seconds: float, concurrency: int) -> None:
    name = f"mlc_bench_scale_{os.getpid()}"
    org, teacher, students = await _prepare(name)
    port = int(ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    bouncer = PgBouncer(port, pool_size=10)
    bouncer.start()
    teacher_token = issue_token(DEV_JWT_SECRET, Role.TEACHER, teacher, org)
    tokens = [(teacher_token, DASHBOARD), (teacher_token, LIBRARY)] + [
        (issue_token(DEV_JWT_SECRET, Role.STUDENT, s, org), SCORES) for s in students[:8]
    ]
    direct = url_for(name)
    print(
        "| set-up | requests | errors | req/s | server CPU ms/req | PgBouncer CPU ms/req "
        "| PostgreSQL CPU ms/req | PG connections |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    logs = tempfile.TemporaryDirectory()
    procs = Processes(Path(logs.name))
    try:
        for n, (label, url, cache) in enumerate(
            (
                ("direct, statement cache 100", direct, 100),
                ("direct, statement cache 0", direct, 0),
                ("PgBouncer (transaction), cache 0", bouncer.url_for(name), 0),
            )
        ):
            http_port, proc_name = free_port(), f"server-{n}"
            env = _server_env(url, direct, cache)
            process = procs.start(proc_name, [*graphql_argv(http_port, 1), "--host", "127.0.0.1"], env)
            try:
                await wait_ready(f"http://127.0.0.1:{http_port}/readyz", process, procs, proc_name)
                await _load(http_port, tokens, 1.0, concurrency)  # warm-up: caches, pools, plans
                server0 = tree_cpu_seconds(process.pid)
                bouncer0 = _bouncer_cpu(bouncer)
                pg0 = postgres_backends_cpu(name)
                started = time.monotonic()
                done, errors = await _load(http_port, tokens, seconds, concurrency)
                elapsed = time.monotonic() - started
                server = tree_cpu_seconds(process.pid) - server0
                bouncer_cpu = _bouncer_cpu(bouncer) - bouncer0
                pg = cpu_delta(pg0, postgres_backends_cpu(name))
                connections = await _connections(name)
                print(
                    f"| {label} | {done} | {errors} | {done / elapsed:.0f} | {1000 * server / done:.2f} | "
                    f"{1000 * bouncer_cpu / done:.2f} | {1000 * pg / done:.2f} | {connections} |"
                )
            finally:
                procs.stop(proc_name)
    finally:
        procs.stop_all()
        logs.cleanup()
        bouncer.remove()
        await _drop(name)


def _bouncer_cpu(bouncer: PgBouncer) -> float:
    return tree_cpu_seconds(bouncer.pid) if bouncer.pid is not None else 0.0


def _used_memory(ports: list[int]) -> dict[int, tuple[int, int]]:
    """(keys, used_memory bytes) of each node."""
    found = {}
    for port in ports:
        client = redis_sync.Redis(port=port)
        found[port] = (int(client.dbsize()), int(client.info("memory")["used_memory"]))
        client.close()
    return found


def _primaries(ports: list[int]) -> list[int]:
    found = []
    for port in ports:
        client = redis_sync.Redis(port=port)
        if client.info("replication")["role"] == "master":
            found.append(port)
        client.close()
    return found


def _grown(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    return {p: (after[p][0] - before[p][0], after[p][1] - before[p][1]) for p in after}


async def redis_figures(users: int, lines: int) -> None:
    with redis_cluster() as nodes:
        primaries = _primaries([n.port for n in nodes.nodes])
        empty = _used_memory(primaries)
        settings = replace(Settings(), redis_url=nodes.url, redis_prefix=f"mlc:{uuid.uuid4().hex[:4]}:")
        realtime = Realtime.create(settings)
        quotas = Quotas(realtime.redis, TierResolver(TierTable.from_overrides(""), 60.0), 900)
        # Room for every user's session (ENSEMBLE's cap is 100 per organization).
        tier = replace(TierTable.from_overrides("").for_tier("ENSEMBLE"), sessions=users)
        for user in range(users):
            await quotas.admit(Principal(Role.STUDENT, user + 1, user % 20 + 1, f"sid-{user}"), tier, 5)
        with_users = _used_memory(primaries)
        now = datetime.now(UTC)
        for n in range(lines):
            student = n + 1
            game, org, teacher = n % 40 + 1, student % 20 + 1, student % 100 + 1
            best = 500 + n % 400
            await realtime.boards.score_committed(
                ScoreCommitted(
                    n, game, student, org, teacher, best, "challenge", best, now, f"First{n}", f"Last{n:04d}"
                )
            )
        with_lines = _used_memory(primaries)
        await realtime.close()
        by_users, by_lines = _grown(empty, with_users), _grown(with_users, with_lines)
        print(f"| primary | keys for {users} users | KiB | keys for {3 * lines} board lines | KiB |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for port in primaries:
            (uk, um), (lk, lm) = by_users[port], by_lines[port]
            print(f"| :{port} | {uk} | {um / 1024:.0f} | {lk} | {lm / 1024:.0f} |")
        user_bytes = sum(m for _, m in by_users.values()) / users
        line_bytes = sum(m for _, m in by_lines.values()) / (3 * lines)
        print(
            f"about {user_bytes:.0f} bytes per active user (session + rate window), "
            f"{line_bytes:.0f} per board line"
        )


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--lines", type=int, default=3000)
    args = parser.parse_args(argv)
    asyncio.run(pgbouncer_figures(args.seconds, args.concurrency))
    asyncio.run(redis_figures(args.users, args.lines))


if __name__ == "__main__":
    cli()
