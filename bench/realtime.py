"""`python -m bench.realtime`: leaderboard reads (Redis vs PostgreSQL) and cross-instance fan-out delay.

Creates a throwaway database with one game whose GLOBAL board has `--students` entries (50 organizations),
starts two `mlc-graph serve` processes on 127.0.0.1 sharing that database and the local Redis (a unique
key prefix, deleted at the end), then measures:
  0. the board read alone, in process: top 10 + the viewer's rank from Redis (one script call) against
     the two PostgreSQL statements it replaces;
  1. `leaderboard(first: 10)` over HTTP, one client, as a student (top 10 + own rank), GLOBAL and CLASS
     scopes, with the live Redis board and with PostgreSQL (a third server without REDIS_URL);
  2. fan-out: a subscriber on instance B, `submitScore` on instance A, time from sending the mutation to
     the `next` message on B (submissions spaced beyond the coalescing interval).
Prints the figures; docs/REALTIME.md records them. Every process and the database are removed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis

from loaders.leaderboards import BoardKey, fetch_rank, fetch_top
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.migrate import migrate
from mlc_graph.platform.redis import RedisState
from mlc_graph.realtime.live_boards import LiveLeaderboards
from resolvers.relay import encode_global_id

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

SEED = """
WITH o AS (
    INSERT INTO organizations (name, tier, seat_count)
    SELECT 'Org ' || n, 'ENSEMBLE', 1000 FROM generate_series(1, 50) n RETURNING id
), t AS (
    INSERT INTO teachers (org_id, first_name, last_name) SELECT id, 'T', 'Teacher' FROM o RETURNING id, org_id
)
INSERT INTO students (org_id, teacher_id, first_name, last_name, username)
SELECT t.org_id, t.id, 'First' || g, 'Last' || g, 'u' || t.id || '-' || g
FROM t CROSS JOIN generate_series(1, $1::int / 50) g
"""
SEED_GAME = """
WITH c AS (INSERT INTO categories (name) VALUES ('Bench') RETURNING id),
     l AS (INSERT INTO levels (name, position) VALUES ('L1', 1) RETURNING id)
INSERT INTO games (title, category_id, level_id, difficulty, status, max_score)
SELECT 'Bench game', c.id, l.id, 'BEGINNER', 'live', 1000000 FROM c, l RETURNING id
"""
SEED_BEST = """
INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at)
SELECT $1, id, org_id, teacher_id, (random() * 900000)::int,
       timestamptz '2026-01-01' + random() * interval '300 days'
FROM students
"""
PICK = "SELECT id, org_id, teacher_id FROM students ORDER BY id LIMIT 3"
BOARD_QUERY = """
query Board($game: ID!, $scope: LeaderboardScope!) {
  leaderboard(gameId: $game, scope: $scope, first: 10) {
    entries { rank score achievedAt displayName }
    viewerEntry { rank score }
  }
}
"""
SUBMIT = "mutation($input: SubmitScoreInput!) { submitScore(input: $input) { clientMutationId } }"
SUBSCRIBE = """
subscription($game: ID!) { leaderboardUpdated(gameId: $game, scope: GLOBAL, first: 10) { entries { score } } }
"""


def _url_for(name: str) -> str:
    return ADMIN_URL.rpartition("/")[0] + "/" + name


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: Sequence[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} ms, p95 {_percentile(values, 0.95):.2f} ms, "
        f"p99 {_percentile(values, 0.99):.2f} ms (n={len(values)})"
    )


class Server:
    def __init__(self, database_url: str, redis_url: str | None, prefix: str) -> None:
        self.port = _free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MLC_ENV": "development",
            "MLC_REDIS_PREFIX": prefix,
        }
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlc_graph.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError("server exited early")
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def _reads(
    session: aiohttp.ClientSession, server: Server, token: str, game: str, scope: str, count: int
) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"query": BOARD_QUERY, "variables": {"game": game, "scope": scope}}
    timings = []
    for i in range(count + 20):
        started = time.perf_counter()
        async with session.post(server.url, json=body, headers=headers) as response:
            payload = await response.json()
        elapsed = (time.perf_counter() - started) * 1000
        if "errors" in payload:
            raise RuntimeError(payload["errors"])
        if i >= 20:  # the first reads warm caches (and build the Redis board)
            timings.append(elapsed)
    return timings


async def _fanout(
    session: aiohttp.ClientSession, a: Server, b: Server, player: str, watcher: str, game: str, rounds: int
) -> tuple[list[float], list[float]]:
    delays: list[float] = []
    submits: list[float] = []
    async with session.ws_connect(
        f"ws://127.0.0.1:{b.port}/graphql", protocols=("graphql-transport-ws",)
    ) as ws:
        await ws.send_str(orjson.dumps({"type": "connection_init", "payload": {"token": watcher}}).decode())
        await ws.receive(timeout=10)
        message = {
            "type": "subscribe",
            "id": "1",
            "payload": {"query": SUBSCRIBE, "variables": {"game": game}},
        }
        await ws.send_str(orjson.dumps(message).decode())
        await ws.receive(timeout=10)
        for n in range(rounds):
            variables = {
                "input": {
                    "gameId": game,
                    "score": 950_000 + n,  # a new best every time, at the top of the board
                    "stage": "CHALLENGE",
                    "idempotencyKey": uuid.uuid4().hex,
                }
            }
            started = time.perf_counter()
            async with session.post(
                a.url,
                json={"query": SUBMIT, "variables": variables},
                headers={"Authorization": f"Bearer {player}"},
            ) as response:
                payload = await response.json()
            submits.append((time.perf_counter() - started) * 1000)
            if "errors" in payload:
                raise RuntimeError(payload["errors"])
            await ws.receive(timeout=10)
            delays.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.3)  # beyond the 250 ms coalescing interval: measure delivery, not merging
    return delays, submits


async def _component(database_url: str, prefix: str, game: int, student: int, count: int) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    state = RedisState(REDIS_URL, prefix=prefix)
    boards = LiveLeaderboards(state)
    try:
        db = Executor(pool, QueryStats())
        board = BoardKey(game, "GLOBAL", None)
        await boards.read(db, board, 10, student)  # builds the board
        live: list[float] = []
        sql: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            await boards.read(db, board, 10, student)
            live.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await fetch_top(db, board, 10)
            await fetch_rank(db, board, student)
            sql.append((time.perf_counter() - started) * 1000)
        print(f"board read in process, GLOBAL: Redis      {_summary(live)}")
        print(f"board read in process, GLOBAL: PostgreSQL {_summary(sql)}")
    finally:
        await state.close()
        await pool.close()


async def main(students: int, reads: int, rounds: int) -> None:
    name = f"mlc_rt_bench_{os.getpid()}"
    prefix = f"mlcbench:{uuid.uuid4().hex[:8]}:"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    servers: list[Server] = []
    try:
        conn = await asyncpg.connect(_url_for(name))
        try:
            await migrate(conn)
            await conn.execute(SEED, students)
            game_pk = await conn.fetchval(SEED_GAME)
            await conn.execute(SEED_BEST, game_pk)
            picks = await conn.fetch(PICK)
        finally:
            await conn.close()
        game = encode_global_id("Game", game_pk)
        await _component(_url_for(name), prefix, game_pk, picks[0]["id"], reads * 3)
        tokens = [
            issue_token(DEV_JWT_SECRET, Role.STUDENT, r["id"], r["org_id"], session_id=f"bench-{i}")
            for i, r in enumerate(picks)
        ]
        a = Server(_url_for(name), REDIS_URL, prefix)
        b = Server(_url_for(name), REDIS_URL, prefix)
        sql = Server(_url_for(name), None, prefix)
        servers += [a, b, sql]
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(s.ready(session) for s in servers))
            print(f"board: {students} students on the GLOBAL board of one game, 50 organizations")
            for scope in ("GLOBAL", "CLASS"):
                live = await _reads(session, a, tokens[0], game, scope, reads)
                pg = await _reads(session, sql, tokens[1], game, scope, reads)
                print(f"leaderboard {scope:<6} Redis      {_summary(live)}")
                print(f"leaderboard {scope:<6} PostgreSQL {_summary(pg)}")
            delays, submits = await _fanout(session, a, b, tokens[2], tokens[0], game, rounds)
            print(f"submitScore on A (HTTP round trip)        {_summary(submits)}")
            print(f"fan-out: submit sent on A -> next on B    {_summary(delays)}")
            fan = [d - s for d, s in zip(delays, submits, strict=True)]
            print(f"fan-out after the mutation's response     {_summary(fan)}")
    finally:
        for server in servers:
            server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=30)
    args: Any = parser.parse_args(argv)
    asyncio.run(main(args.students, args.reads, args.rounds))


if __name__ == "__main__":
    cli()
