"""Lifecycle: SIGTERM drains in-flight requests; a database that goes away costs errors only while it is away."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import asyncpg
import pytest

from mlc_graph.platform.migrate import migrate
from tests.support import factories
from tests.support.http import (
    app_client,
    bearer,
    free_port,
    http_settings,
    start_server,
    stop_server,
    wait_ready,
)
from tests.support.pgcluster import primary_cluster

pytestmark = pytest.mark.slow

TEACHER_QUERY = {"query": "query Me { viewer { teacher { displayName } } }"}
IN_FLIGHT = 8
WAITING_ON_LOCK = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'mlc-graph' AND wait_event_type = 'Lock'
"""


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with session.post(url, json=TEACHER_QUERY, headers=headers) as response:
        return response.status, await response.json()


async def test_sigterm_finishes_every_in_flight_request_then_stops(
    database_url: str, clean_db: asyncpg.Pool
) -> None:
    org = await factories.make_org(clean_db)
    teacher_id = await factories.make_teacher(clean_db, org, "Ada", "Lovelace")
    auth = bearer("teacher", teacher_id, org)
    port = free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    process = start_server(database_url, port)
    signalled = False
    try:
        await wait_ready(port, process)
        lock = await asyncpg.connect(database_url)
        # Activity is read on its own connection: inside a transaction pg_stat_activity is a snapshot.
        watch = await asyncpg.connect(database_url)
        locked = lock.transaction()
        await locked.start()
        # Hold the teachers table so every request is provably in flight (blocked in SQL) at SIGTERM.
        await lock.execute("LOCK TABLE teachers IN ACCESS EXCLUSIVE MODE")
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            pending = [asyncio.create_task(_post(session, url, auth)) for _ in range(IN_FLIGHT)]
            for _ in range(200):
                if await watch.fetchval(WAITING_ON_LOCK) == IN_FLIGHT:
                    break
                await asyncio.sleep(0.05)
            assert await watch.fetchval(WAITING_ON_LOCK) == IN_FLIGHT
            process.send_signal(signal.SIGTERM)
            signalled = True
            # It stops accepting at once, while the blocked requests are still running.
            refused = False
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz"):
                        pass
                except aiohttp.ClientConnectionError:
                    refused = True
                    break
                await asyncio.sleep(0.02)
            assert refused
            assert all(not task.done() for task in pending)
            await locked.rollback()
            await lock.close()
            await watch.close()
            results = await asyncio.gather(*pending)
        assert [status for status, _ in results] == [200] * IN_FLIGHT
        assert all(body["data"]["viewer"]["teacher"]["displayName"] == "A. Lovelace" for _, body in results)
    finally:
        code, output = stop_server(process, terminate=not signalled)
    assert code == 0, output


async def test_readiness_and_requests_follow_a_real_database_restart() -> None:
    with primary_cluster() as cluster:
        conn = await asyncpg.connect(cluster.url)
        try:
            await conn.execute("CREATE DATABASE mlc")
        finally:
            await conn.close()
        conn = await asyncpg.connect(cluster.url_for("mlc"))
        try:
            await migrate(conn)
            org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('Org') RETURNING id")
            teacher_id = await conn.fetchval(
                "INSERT INTO teachers (org_id, first_name, last_name) VALUES ($1, 'Ada', 'Lovelace') RETURNING id",
                org,
            )
        finally:
            await conn.close()
        auth = bearer("teacher", teacher_id, org)
        # The hourly request quota raised above the load: four clients in a loop for a few seconds can
        # pass PRELUDE's 500 on a fast machine, and RATE_LIMITED is not what this test is about.
        unlimited = '{"PRELUDE": {"requests_per_hour": 1000000}}'
        async with app_client(http_settings(cluster.url_for("mlc"), tier_overrides=unlimited)) as client:
            # Load throughout: four clients asking in a loop; each answer is stamped with the phase it
            # started in, so errors can be pinned to the time the database was really down.
            phase = "up"
            answers: list[tuple[str, str, str]] = []  # (phase at start, phase at end, outcome)
            running = True

            async def ask() -> str:
                response = await client.post("/graphql", json=TEACHER_QUERY, headers=auth)
                body = await response.json()
                if response.status == 200 and "errors" not in body:
                    return "ok"
                return str(body["errors"][0]["extensions"]["code"])

            async def load() -> None:
                while running:
                    started = phase
                    outcome = await ask()
                    answers.append((started, phase, outcome))
                    await asyncio.sleep(0.01)

            assert (await client.get("/readyz")).status == 200
            clients = [asyncio.create_task(load()) for _ in range(4)]
            await asyncio.sleep(0.5)

            phase = "stopping"
            await asyncio.to_thread(cluster.stop, "fast")
            phase = "down"
            assert (await client.get("/readyz")).status == 503
            assert (await client.get("/healthz")).status == 200
            await asyncio.sleep(0.5)

            phase = "starting"
            await asyncio.to_thread(cluster.start)
            for _ in range(100):
                if (await client.get("/readyz")).status == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("never ready again")
            phase = "back"
            await asyncio.sleep(0.5)
            running = False
            await asyncio.gather(*clients)

        def outcomes(*phases: str) -> set[str]:
            return {o for start, end, o in answers if start in phases and end in phases}

        assert outcomes("up") == {"ok"}
        # While it is away: a clear SERVICE_UNAVAILABLE, never a masked internal error or a hang.
        assert outcomes("down") == {"SERVICE_UNAVAILABLE"}
        assert outcomes("stopping", "down", "starting") <= {"ok", "SERVICE_UNAVAILABLE"}
        # Back: no stale connection from before the restart turns into an error now.
        assert outcomes("back") == {"ok"}
        assert sum(1 for start, _, _ in answers if start == "back") >= 4
