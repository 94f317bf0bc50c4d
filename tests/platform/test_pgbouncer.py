"""The product through a real PgBouncer in transaction pooling mode (docs/OPERATIONS.md, Behind PgBouncer).

Every PgBouncer here has two server connections for up to eight client connections per pool, so
consecutive statements of one client routinely run on different server sessions: anything that relied
on session state (named prepared statements, a session SET, a session advisory lock) would break.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date
from typing import Any

import asyncpg
import pytest

from mlc_graph.platform.config import PoolSettings
from mlc_graph.platform.db import Executor, QueryStats, check_read_timeout, create_pool
from mlc_graph.platform.errors import DatabaseUnavailableError
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support.database import ADMIN_URL
from tests.support.http import ROOT, app_client, bearer, http_settings
from tests.support.pgbouncer import PgBouncer, pgbouncer
from tests.support.pgcluster import Cluster, primary_cluster

pytestmark = pytest.mark.slow

THROUGH_BOUNCER = PoolSettings(min_size=1, max_size=8, acquire_timeout=5.0, statement_cache_size=0)


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    """In front of the test PostgreSQL (127.0.0.1:5432), with the default 5 s read timeout."""
    port = int(ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    with pgbouncer(port) as running:
        yield running


@pytest.fixture
def through_bouncer(bouncer: PgBouncer, database_name: str) -> str:
    return bouncer.url_for(database_name)


async def _school(pool: asyncpg.Pool) -> dict[str, int]:
    org = await factories.make_org(pool, "Bounced", seats=2000)
    teacher = await factories.make_teacher(pool, org)
    students = await factories.make_students(pool, org, teacher, 3)
    _, _, games = await factories.make_catalogue(pool, games=2)
    await factories.make_assignments(pool, org, students, games[:1])
    assignment = await pool.fetchval("SELECT min(id) FROM assignments")
    return {
        "org": org,
        "teacher": teacher,
        "student": students[0],
        "game": games[0],
        "assignment": assignment,
    }


QUERIES = [
    "{ viewer { role teacher { id students(first: 20) { totalCount edges { node { id displayName"
    " assignments(first: 5) { edges { node { dueDate game { title } } } } } } } } } }",
    "{ games(first: 10) { totalCount edges { cursor node { id title category { name } } } } }",
    "{ categories { name } }",
    "query($t: ID!) { classProgress(teacherId: $t) { __typename } }",
    "query($g: ID!) { leaderboard(gameId: $g, scope: GLOBAL, first: 5) { entries { rank score } } }",
]


async def test_queries_and_every_mutation_through_pgbouncer(
    clean_db: asyncpg.Pool, through_bouncer: str, database_url: str
) -> None:
    """With MLC_DB_STATEMENT_CACHE_SIZE=0 every query and every mutation answers without errors, many at
    once, through two server connections; the roster import (several chunks) commits as one."""
    ids = await _school(clean_db)
    settings = replace(http_settings(through_bouncer, direct_database_url=database_url), pool=THROUGH_BOUNCER)
    teacher = bearer("teacher", ids["teacher"], ids["org"])
    student = bearer("student", ids["student"], ids["org"])
    game = encode_global_id("Game", ids["game"])
    assignment = encode_global_id("Assignment", ids["assignment"])
    variables = {"t": encode_global_id("Teacher", ids["teacher"]), "g": game}
    csv = "first_name,last_name,username\n" + "".join(f"Pupil,No{i},pupil{i}\n" for i in range(1200))
    mutations: list[tuple[dict[str, str], str, dict[str, Any]]] = [
        (
            student,
            "mutation($i: SubmitScoreInput!) { submitScore(input: $i) { score { score } rank } }",
            {"gameId": game, "score": 700, "stage": "CHALLENGE", "idempotencyKey": str(uuid.uuid4())},
        ),
        (
            teacher,
            "mutation($i: AssignGameInput!) { assignGame(input: $i) { assignments { id } } }",
            {
                "gameId": encode_global_id("Game", ids["game"] + 1),
                "studentIds": [encode_global_id("Student", ids["student"])],
                "dueDate": date(2027, 1, 15).isoformat(),
            },
        ),
        (
            student,
            "mutation($i: CompleteAssignmentInput!) { completeAssignment(input: $i) { assignment { status } } }",
            {"assignmentId": assignment},
        ),
        (
            teacher,
            "mutation($i: ImportStudentsInput!) { importStudents(input: $i) { created skipped errors { message } } }",
            {"teacherId": variables["t"], "csv": csv},
        ),
        (
            student,
            "mutation($i: ReportWebVitalsInput!) { reportWebVitals(input: $i) { accepted } }",
            {"metrics": [{"name": "LCP", "value": 1800.0, "id": "v1-1"}], "page": "/play"},
        ),
    ]
    async with app_client(settings) as client:

        async def post(headers: dict[str, str], query: str, variables: Any) -> dict[str, Any]:
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            body: dict[str, Any] = await response.json()
            assert (response.status, body.get("errors")) == (200, None), body
            data: dict[str, Any] = body["data"]
            return data

        reads = [post(teacher, q, variables if "$" in q else None) for q in QUERIES for _ in range(4)]
        await asyncio.gather(*reads)
        results = [await post(headers, query, {"i": i}) for headers, query, i in mutations]
        assigned = results[1]["assignGame"]["assignments"][0]["id"]
        archived = await post(
            teacher,
            "mutation($i: UpdateAssignmentStatusInput!) { updateAssignmentStatus(input: $i) { assignment { status } } }",
            {"i": {"assignmentId": assigned, "status": "ARCHIVED"}},
        )
        ended = await post(student, "mutation { endSession { ended } }", None)
    assert results[0]["submitScore"]["score"]["score"] == 700
    assert archived["updateAssignmentStatus"]["assignment"]["status"] == "ARCHIVED"
    assert results[2]["completeAssignment"]["assignment"]["status"] == "COMPLETED"
    assert results[3]["importStudents"] == {"created": 1200, "skipped": 0, "errors": []}
    assert ended["endSession"]["ended"] is True
    assert await clean_db.fetchval("SELECT count(*) FROM students WHERE username LIKE 'pupil%'") == 1200


async def test_the_statement_cache_breaks_transaction_pooling_and_size_0_does_not(
    through_bouncer: str,
) -> None:
    """The negative control for MLC_DB_STATEMENT_CACHE_SIZE=0: with asyncpg's cache on, named prepared
    statements land on one server session and are used from another (PgBouncer 1.18 does not track
    them); with it off the same load runs clean."""

    async def load(pool: asyncpg.Pool) -> None:
        for round_ in range(30):
            await asyncio.gather(*(pool.fetchval(f"SELECT $1::int + {n}", round_) for n in range(8)))

    cached = await create_pool(through_bouncer, replace(THROUGH_BOUNCER, statement_cache_size=100))
    try:
        with pytest.raises(
            (
                asyncpg.InvalidSQLStatementNameError,
                asyncpg.DuplicatePreparedStatementError,
                asyncpg.ProtocolViolationError,
            )
        ):
            await load(cached)
    finally:
        cached.terminate()
    uncached = await create_pool(through_bouncer, THROUGH_BOUNCER)
    try:
        await load(uncached)
    finally:
        await uncached.close()


async def test_statement_timeouts_through_pgbouncer(database_name: str) -> None:
    """The read timeout comes from PgBouncer's connect_query (the startup parameter is ignored there);
    a report's SET LOCAL gives it longer inside its transaction and does not leak into the shared
    server session afterwards."""
    port = int(ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    timeouts = replace(THROUGH_BOUNCER, read_statement_timeout_ms=300, report_statement_timeout_ms=5000)
    with pgbouncer(port, read_timeout_ms=300) as short:
        pool = await create_pool(short.url_for(database_name), timeouts)
        try:
            assert await check_read_timeout(pool, 300) is True
            db = Executor(pool, QueryStats())
            with pytest.raises(DatabaseUnavailableError, match="timed out"):
                await db.fetchval("SELECT pg_sleep(1)")
            async with db.report() as report:
                await report.fetchval("SELECT pg_sleep(0.6)")
            for _ in range(4):  # every server session: the report's timeout ended with its transaction
                with pytest.raises(DatabaseUnavailableError, match="timed out"):
                    await db.fetchval("SELECT pg_sleep(0.6)")
        finally:
            await pool.close()
    with pgbouncer(port, read_timeout_ms=0) as unset:
        pool = await create_pool(unset.url_for(database_name), timeouts)
        try:
            assert await check_read_timeout(pool, 300) is False  # a bouncer without connect_query is reported
        finally:
            await pool.close()


async def test_session_advisory_locks_do_not_survive_pgbouncer_so_migrate_goes_direct(
    bouncer: PgBouncer, database_name: str, tmp_path: Any
) -> None:
    """Why `migrate` connects to MLC_DIRECT_DATABASE_URL: through transaction pooling the unlock of a
    session lock runs on whichever server session is free, not the one holding the lock. Then
    `mlc-graph migrate` with DATABASE_URL on the bouncer and the direct URL set migrates a fresh database."""
    url = bouncer.url_for(database_name)
    holder = await asyncpg.connect(url, statement_cache_size=0)
    other = await asyncpg.connect(url, statement_cache_size=0)
    try:
        await holder.execute("SELECT pg_advisory_lock(4242)")
        # Pin the lock's server session (one of two) so the holder's next statement gets the other one.
        sleeper = asyncio.create_task(other.execute("SELECT pg_sleep(1), pg_advisory_unlock_all()"))
        await asyncio.sleep(0.3)
        unlocked = await holder.fetchval("SELECT pg_advisory_unlock(4242)")
        await sleeper
    finally:
        await holder.close()
        await other.close()
    assert unlocked is False

    fresh = f"mlc_bounce_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{fresh}"')
    try:
        direct = ADMIN_URL.rsplit("/", 1)[0] + f"/{fresh}"
        env = {**os.environ, "DATABASE_URL": bouncer.url_for(fresh), "MLC_DIRECT_DATABASE_URL": direct}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "mlc_graph.cli", "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().startswith("applied: ")
        conn = await asyncpg.connect(direct)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0
            assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[Cluster, PgBouncer]]:
    """A PostgreSQL this test may stop, migrated, behind its own PgBouncer."""
    from mlc_graph.platform.migrate import migrate

    with primary_cluster() as cluster:
        conn = await asyncpg.connect(cluster.url)
        await conn.execute("CREATE DATABASE mlc")
        await conn.close()
        conn = await asyncpg.connect(cluster.url_for("mlc"))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        with pgbouncer(cluster.port) as running:
            yield cluster, running


async def test_readiness_when_pgbouncer_answers_but_postgresql_does_not(
    own_postgres: tuple[Cluster, PgBouncer],
) -> None:
    """PgBouncer still accepts connections while PostgreSQL is down: /readyz says 503 (its statement
    cannot run), /healthz stays 200, and readiness returns by itself once PostgreSQL is back."""
    cluster, running = own_postgres
    settings = replace(
        http_settings(running.url_for("mlc"), direct_database_url=cluster.url_for("mlc")),
        pool=THROUGH_BOUNCER,
    )
    async with app_client(settings) as client:
        assert (await client.get("/readyz")).status == 200
        await asyncio.to_thread(cluster.stop, "immediate")
        down = await client.get("/readyz")
        assert (down.status, await down.json()) == (503, {"status": "unavailable", "database": "unreachable"})
        assert (await client.get("/healthz")).status == 200
        await asyncio.to_thread(cluster.start)
        statuses = []
        for _ in range(100):  # bounded: PgBouncer retries the server login every second
            statuses.append((await client.get("/readyz")).status)
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.1)
        assert statuses[-1] == 200


async def test_subscription_board_reads_through_pgbouncer(
    clean_db: asyncpg.Pool, through_bouncer: str
) -> None:
    """A leaderboard subscription's first board read and its re-read after a score both run through
    the bouncer (no Redis: boards come from PostgreSQL)."""
    ids = await _school(clean_db)
    settings = replace(http_settings(through_bouncer), pool=THROUGH_BOUNCER)
    game = encode_global_id("Game", ids["game"])
    async with app_client(settings) as client:
        headers = bearer("student", ids["student"], ids["org"])
        async with client.ws_connect("/graphql", protocols=["graphql-transport-ws"]) as ws:
            await ws.send_json(
                {"type": "connection_init", "payload": {"token": headers["Authorization"][7:]}}
            )
            assert (await ws.receive_json(timeout=10))["type"] == "connection_ack"
            query = "subscription($g: ID!) { leaderboardUpdated(gameId: $g, scope: ORGANIZATION) { entries { score } } }"
            await ws.send_json(
                {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"g": game}}}
            )
            first = await ws.receive_json(timeout=10)
            assert first["payload"]["data"]["leaderboardUpdated"]["entries"] == []
            submit = {
                "query": "mutation($i: SubmitScoreInput!) { submitScore(input: $i) { rank } }",
                "variables": {
                    "i": {"gameId": game, "score": 640, "stage": "CHALLENGE", "idempotencyKey": "b-1"}
                },
            }
            response = await client.post("/graphql", json=submit, headers=headers)
            assert (await response.json()).get("errors") is None
            update = await ws.receive_json(timeout=10)
            assert update["payload"]["data"]["leaderboardUpdated"]["entries"] == [{"score": 640}]
