"""Read routing against a real streaming replica (pg_basebackup -R from a primary this module starts)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from mlc_graph.http.observe import METRICS, ROUTER
from mlc_graph.observability.metrics import Metrics
from mlc_graph.platform.config import PoolSettings
from mlc_graph.platform.db import create_pool
from mlc_graph.platform.migrate import migrate
from mlc_graph.platform.redis import RedisState
from mlc_graph.platform.replicas import LocalMarks, RedisMarks, Replica, ReplicaRouter, parse_lsn, user_key
from resolvers.relay import encode_global_id
from tests.observability.test_metrics import _samples
from tests.support import factories
from tests.support.database import REDIS_URL
from tests.support.http import app_client, bearer, http_settings
from tests.support.pgbouncer import pgbouncer
from tests.support.pgcluster import Cluster, primary_cluster, streaming_replica

pytestmark = pytest.mark.slow

SETTINGS = PoolSettings(min_size=1, max_size=4)


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    with primary_cluster() as primary:
        import asyncio as aio

        async def setup() -> None:
            conn = await asyncpg.connect(primary.url)
            try:
                await conn.execute("CREATE DATABASE mlc")
            finally:
                await conn.close()
            conn = await asyncpg.connect(primary.url_for("mlc"))
            try:
                await migrate(conn)
            finally:
                await conn.close()

        aio.run(setup())
        with streaming_replica(primary) as replica:
            yield primary, replica


@pytest.fixture(scope="module")
async def pools(clusters: tuple[Cluster, Cluster]) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    primary, replica = clusters
    primary_pool = await create_pool(primary.url_for("mlc"), SETTINGS)
    replica_pool = await create_pool(replica.url_for("mlc"), SETTINGS)
    yield primary_pool, replica_pool
    await replica_pool.close()
    await primary_pool.close()


async def _router(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], window: float = 30.0, metrics: Metrics | None = None
) -> ReplicaRouter:
    primary_pool, replica_pool = pools
    router = ReplicaRouter(
        primary_pool, [Replica("replica-1", replica_pool)], LocalMarks(), window=window, metrics=metrics
    )
    await router.refresh()
    return router


async def _insert_org(pool: asyncpg.Pool, name: str) -> int:
    org_id: int = await pool.fetchval("INSERT INTO organizations (name) VALUES ($1) RETURNING id", name)
    return org_id


async def _has_org(pool: asyncpg.Pool, org_id: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM organizations WHERE id = $1", org_id))


async def _wait_replayed(router: ReplicaRouter, replica_pool: asyncpg.Pool, org_id: int) -> None:
    for _ in range(200):
        if await _has_org(replica_pool, org_id):
            await router.refresh()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("replica never replayed the write")


def test_parse_lsn_orders_positions() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn(None) == 0
    assert parse_lsn("1/0") == 1 << 32
    assert parse_lsn("16/B374D848") > parse_lsn("16/B374D847") > parse_lsn("15/FFFFFFFF")


async def test_the_replica_is_a_real_standby(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    primary_pool, replica_pool = pools
    assert await primary_pool.fetchval("SELECT pg_is_in_recovery()") is False
    assert await replica_pool.fetchval("SELECT pg_is_in_recovery()") is True
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await _insert_org(replica_pool, "refused")


async def test_queries_go_to_the_replica_and_mutations_to_the_primary(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    metrics = Metrics()
    router = await _router(pools, metrics=metrics)
    read = await router.for_query(user_key("STUDENT", 1))
    assert (read.target, read.reason) == ("replica-1", "replica")
    assert await read.pool.fetchval("SELECT pg_is_in_recovery()") is True
    write = router.for_mutation()
    assert (write.target, write.reason) == ("primary", "mutation")
    assert await write.pool.fetchval("SELECT pg_is_in_recovery()") is False
    text = metrics.render().decode()
    assert 'mlc_db_routed_requests_total{reason="replica",target="replica"} 1.0' in text
    assert 'mlc_db_routed_requests_total{reason="mutation",target="primary"} 1.0' in text
    assert 'mlc_db_replica_up{replica="replica-1"} 1.0' in text


async def test_a_writer_reads_from_the_primary_until_the_replica_has_replayed_the_write(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    primary_pool, replica_pool = pools
    metrics = Metrics()
    router = await _router(pools, metrics=metrics)
    writer, other = user_key("STUDENT", 7), user_key("STUDENT", 8)
    # Hold replay on the standby so its lag is certain, not a race we hope to win.
    await replica_pool.execute("SELECT pg_wal_replay_pause()")
    try:
        org_id = await _insert_org(primary_pool, f"written-{uuid.uuid4().hex[:6]}")
        await router.note_write(writer)

        mine = await router.for_query(writer)
        assert (mine.target, mine.reason) == ("primary", "read_your_writes")
        assert await _has_org(mine.pool, org_id), "the writer sees its own write"

        theirs = await router.for_query(other)
        assert theirs.target == "replica-1"
        assert not await _has_org(theirs.pool, org_id), "the paused replica really lags"

        await router.refresh()
        assert 'mlc_db_replica_lag_bytes{replica="replica-1"} 0.0' not in metrics.render().decode()
    finally:
        await replica_pool.execute("SELECT pg_wal_replay_resume()")

    await _wait_replayed(router, replica_pool, org_id)
    caught_up = await router.for_query(writer)
    assert (caught_up.target, caught_up.reason) == ("replica-1", "replica")
    assert await _has_org(caught_up.pool, org_id)
    assert 'reason="read_your_writes",target="primary"} 1.0' in metrics.render().decode()


async def test_the_primary_window_is_bounded(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    primary_pool, replica_pool = pools
    router = await _router(pools, window=0.2)
    writer = user_key("TEACHER", 3)
    await replica_pool.execute("SELECT pg_wal_replay_pause()")
    try:
        await _insert_org(primary_pool, "windowed")
        await router.note_write(writer)
        assert (await router.for_query(writer)).target == "primary"
        await asyncio.sleep(0.3)
        # The replica is still behind, but the mark has expired: reads stop loading the primary.
        assert (await router.for_query(writer)).target == "replica-1"
    finally:
        await replica_pool.execute("SELECT pg_wal_replay_resume()")


async def test_marks_in_redis_are_shared_by_instances(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    primary_pool, replica_pool = pools
    redis = RedisState(REDIS_URL, prefix=f"mlc-test-{uuid.uuid4().hex[:8]}:")
    try:
        one = ReplicaRouter(primary_pool, [Replica("replica-1", replica_pool)], RedisMarks(redis))
        two = ReplicaRouter(primary_pool, [Replica("replica-1", replica_pool)], RedisMarks(redis))
        await one.refresh()
        await two.refresh()
        writer = user_key("STUDENT", 11)
        await replica_pool.execute("SELECT pg_wal_replay_pause()")
        try:
            await _insert_org(primary_pool, "shared")
            await one.note_write(writer)
            # The write went through instance one; instance two still sends the writer to the primary.
            assert (await two.for_query(writer)).reason == "read_your_writes"
        finally:
            await replica_pool.execute("SELECT pg_wal_replay_resume()")
    finally:
        await redis.close()


async def test_without_a_healthy_replica_reads_use_the_primary(clusters: tuple[Cluster, Cluster]) -> None:
    primary, _ = clusters
    primary_pool = await create_pool(primary.url_for("mlc"), SETTINGS)
    dead_pool = await create_pool(
        "postgresql://postgres@127.0.0.1:1/mlc", PoolSettings(min_size=0, max_size=1)
    )
    try:
        router = ReplicaRouter(primary_pool, [Replica("gone", dead_pool)])
        await router.refresh()
        route = await router.for_query(user_key("STUDENT", 1))
        assert (route.target, route.reason) == ("primary", "no_replica")
    finally:
        await dead_pool.close()
        await primary_pool.close()


SCORES_QUERY = "query MyScores { viewer { student { scores(first: 5) { edges { node { score } } } } } }"
SUBMIT = """
mutation Play($input: SubmitScoreInput!) { submitScore(input: $input) { score { score } } }
"""


@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
async def test_the_app_routes_by_operation_and_keeps_read_your_writes(
    clusters: tuple[Cluster, Cluster], pools: tuple[asyncpg.Pool, asyncpg.Pool], through: str
) -> None:
    """Also with the primary and the replica each behind its own PgBouncer in transaction mode
    (statement cache off): the replay positions and the write marks need no session state."""
    primary, replica = clusters
    primary_pool, replica_pool = pools
    with contextlib.ExitStack() as bouncers:
        if through == "pgbouncer":
            primary_url = bouncers.enter_context(pgbouncer(primary.port)).url_for("mlc")
            replica_url = bouncers.enter_context(pgbouncer(replica.port)).url_for("mlc")
            pool = PoolSettings(min_size=1, max_size=4, acquire_timeout=2.0, statement_cache_size=0)
        else:
            primary_url, replica_url = primary.url_for("mlc"), replica.url_for("mlc")
            pool = PoolSettings(min_size=1, max_size=4, acquire_timeout=2.0)
        await _routes_and_reads_your_writes(
            primary_url, replica_url, primary.url_for("mlc"), pool, primary_pool, replica_pool
        )


async def _routes_and_reads_your_writes(
    primary_url: str,
    replica_url: str,
    direct_url: str,
    pool: PoolSettings,
    primary_pool: asyncpg.Pool,
    replica_pool: asyncpg.Pool,
) -> None:
    org = await factories.make_org(primary_pool, name=f"Routed {uuid.uuid4().hex[:6]}")
    teacher = await factories.make_teacher(primary_pool, org)
    writer, reader = await factories.make_students(primary_pool, org, teacher, 2)
    _, _, [game] = await factories.make_catalogue(primary_pool, games=1)
    settings = http_settings(
        primary_url,
        database_read_urls=(replica_url,),
        replica_poll_seconds=0.05,
        pool=pool,
        direct_database_url=direct_url,
    )
    writer_auth, reader_auth = bearer("student", writer, org), bearer("student", reader, org)
    async with app_client(settings) as client:
        router = client.app[ROUTER]
        for _ in range(200):  # the replica must have replayed the rows made above before it is asked
            await router.refresh()
            if await replica_pool.fetchval("SELECT count(*) FROM games WHERE id = $1", game):
                break
            await asyncio.sleep(0.05)

        async def my_scores(auth: dict[str, str]) -> list[int]:
            response = await client.post("/graphql", json={"query": SCORES_QUERY}, headers=auth)
            body = await response.json()
            return [e["node"]["score"] for e in body["data"]["viewer"]["student"]["scores"]["edges"]]

        def routed() -> dict[tuple[str, str], float]:
            return {
                (dict(labels)["target"], dict(labels)["reason"]): value
                for (name, labels), value in _samples(client.app[METRICS]).items()
                if name == "mlc_db_routed_requests_total"
            }

        assert await my_scores(writer_auth) == []
        assert routed() == {("replica", "replica"): 1}

        await replica_pool.execute("SELECT pg_wal_replay_pause()")
        try:
            variables = {
                "input": {
                    "gameId": encode_global_id("Game", game),
                    "score": 640,
                    "stage": "CHALLENGE",
                    "idempotencyKey": uuid.uuid4().hex,
                }
            }
            played = await client.post(
                "/graphql", json={"query": SUBMIT, "variables": variables}, headers=writer_auth
            )
            assert (await played.json())["data"]["submitScore"]["score"]["score"] == 640
            # The replica has not replayed the score, yet its author sees it: that read went to the primary.
            assert await my_scores(writer_auth) == [640]
            assert await my_scores(reader_auth) == []
            assert routed() == {
                ("replica", "replica"): 2,
                ("primary", "mutation"): 1,
                ("primary", "read_your_writes"): 1,
            }
        finally:
            await replica_pool.execute("SELECT pg_wal_replay_resume()")
        for _ in range(200):
            if await replica_pool.fetchval("SELECT count(*) FROM scores WHERE student_id = $1", writer):
                break
            await asyncio.sleep(0.05)
        await router.refresh()
        assert await my_scores(writer_auth) == [640]
        assert routed()[("replica", "replica")] == 3
