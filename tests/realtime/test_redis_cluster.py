"""Every real-time feature on a real six-node Redis Cluster (`REDIS_URL=redis+cluster://...`).

Each Lua script runs on the cluster through the code that uses it; a script whose keys spanned slots
would fail with CROSSSLOT and fall back in process, so each check also asserts that nothing fell back
and the answer says `shared`. The negative control runs the admission script with an untagged key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from loaders.leaderboards import BoardKey
from mlc_graph.domain.tiers import TierTable
from mlc_graph.guards.persisted import RedisStore
from mlc_graph.guards.quotas import _ADMIT, Quotas
from mlc_graph.guards.ratelimit import identity_for
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.events import ScoreCommitted
from mlc_graph.platform.redis import RedisState, connect, fallback_count
from mlc_graph.platform.replicas import RedisMarks
from mlc_graph.realtime.pubsub import channel_of
from mlc_graph.realtime.services import Realtime
from tests.support import factories
from tests.support.graphql_client import principal
from tests.support.redis_cluster import RedisClusterNodes, redis_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes() -> Iterator[RedisClusterNodes]:
    with redis_cluster() as running:
        yield running


@pytest.fixture
async def realtime(nodes: RedisClusterNodes) -> AsyncIterator[Realtime]:
    settings = replace(Settings(), redis_url=nodes.url, redis_prefix=f"mlctest:{uuid.uuid4().hex[:8]}:")
    service = Realtime.create(settings)
    assert service.redis.cluster
    await service.start()
    yield service
    await service.close()


@pytest.fixture
def quotas(realtime: Realtime) -> Quotas:
    return Quotas(realtime.redis, TierResolver(TierTable.from_overrides(""), 60.0), 900)


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


async def test_admission_script_runs_on_one_slot(quotas: Quotas) -> None:
    """Sessions, the ended marker and the user's window share the organization's tag: one slot, and
    the combined script admits and counts on the cluster."""
    tier = TierTable.from_overrides("").for_tier("SOLO")
    before = fallback_count()
    viewer = principal("student", 41, 7, sid="cluster-sid")
    checks = [await quotas.admit(viewer, tier, cost=3) for _ in range(3)]
    assert [c.admitted for c, _ in checks] == [True, True, True]
    results = [r for _, r in checks]
    assert all(r is not None and r.shared for r in results)
    assert [r.used for r in results if r is not None] == [1, 2, 3]
    assert [r.cost_used for r in results if r is not None] == [3, 6, 9]
    peek = await quotas.limiter.peek(identity_for("STUDENT", 41), tier, org_id=7)
    assert (peek.used, peek.shared) == (3, True)
    keys = [*quotas.sessions.keys(7, "cluster-sid"), quotas.limiter.key(identity_for("STUDENT", 41), 7)]
    assert len(_slots(keys)) == 1
    assert fallback_count() == before


async def test_untagged_keys_are_refused_by_the_cluster(quotas: Quotas) -> None:
    """The negative control: the same script with the window key outside the organization's tag."""
    client = quotas.redis.client
    assert isinstance(client, RedisCluster)
    keys = [*quotas.sessions.keys(8, "x"), quotas.limiter.key("student:1")]
    assert len(_slots(keys)) > 1
    with pytest.raises(ResponseError, match="same slot"):
        await client.eval(_ADMIT, 3, *keys, "x", 900, 10, 3600, 60, 500, 5000, 1, 0)


async def test_rate_limit_and_session_scripts_on_the_cluster(quotas: Quotas) -> None:
    tier = replace(TierTable.from_overrides("").for_tier("SOLO"), requests_per_hour=2, sessions=1)
    before = fallback_count()
    me = identity_for("TEACHER", 5)
    decisions = [await quotas.limiter.hit(me, tier, org_id=9) for _ in range(3)]
    assert [(d.allowed, d.shared) for d in decisions] == [(True, True), (True, True), (False, True)]
    first = await quotas.sessions.touch(9, "one", tier.sessions)
    second = await quotas.sessions.touch(9, "two", tier.sessions)
    assert (first.admitted, second.admitted, second.active) == (True, False, 1)
    assert await quotas.sessions.active(9) == 1
    assert await quotas.sessions.end(9, "one") is True
    assert (await quotas.sessions.touch(9, "one", tier.sessions)).ended is True
    assert (await quotas.sessions.touch(9, "two", tier.sessions)).admitted is True
    assert fallback_count() == before


async def test_live_board_scripts_and_sharded_fan_out_on_the_cluster(
    realtime: Realtime, clean_db: asyncpg.Pool, nodes: RedisClusterNodes
) -> None:
    """Upsert and read scripts on three boards (three slots), the rebuild from PostgreSQL, and a
    notice that travels by SPUBLISH to this process's SSUBSCRIBE listener."""
    org = await factories.make_org(clean_db, "Sharded")
    teacher = await factories.make_teacher(clean_db, org)
    [student] = await factories.make_students(clean_db, org, teacher, 1)
    _, _, [game] = await factories.make_catalogue(clean_db, games=1)
    await asyncio.wait_for(realtime.updates.listening.wait(), 10)
    board = BoardKey(game, "ORGANIZATION", org)
    listener = realtime.updates.listen(board)
    before = fallback_count()
    try:
        event = ScoreCommitted(1, game, student, org, teacher, 880, "challenge", 880, datetime.now(UTC))
        await realtime.boards.score_committed(event)
        await asyncio.wait_for(listener.wait(), 10)  # heard back through the cluster
    finally:
        listener.close()
    db = Executor(clean_db, QueryStats())
    # Unbuilt boards rebuild from best_scores (empty here: the event was not a real write).
    live = await realtime.boards.read(db, board, 5, student)
    assert live.rebuilt is True
    await realtime.boards.score_committed(event)
    live = await realtime.boards.read(db, board, 5, student)
    assert ([e.score for e in live.entries], live.viewer is not None) == ([880], True)
    assert fallback_count() == before
    # The sixteen channels spread over the shards, not all on one.
    client = realtime.redis.client
    assert isinstance(client, RedisCluster)
    owners = {nodes.node_for(c).port for c in realtime.updates.channels}
    assert len(owners) == 3
    assert channel_of(board, realtime.updates.channels) in realtime.updates.channels
    assert nodes.node_for(realtime.boards.keys(board)[0]) == nodes.node_for(realtime.boards.keys(board)[1])


async def test_apq_store_and_read_your_writes_marks_on_the_cluster(nodes: RedisClusterNodes) -> None:
    prefix = f"mlctest:{uuid.uuid4().hex[:8]}:"
    client = connect(nodes.url, 0.5, decode_responses=False)
    try:
        store = RedisStore(client, prefix + "apq:")
        await store.put("a" * 64, "{ viewer { role } }")
        assert await store.get("a" * 64) == "{ viewer { role } }"
    finally:
        await client.aclose()
    state = RedisState(nodes.url, prefix=prefix)
    try:
        marks = RedisMarks(state)
        await marks.remember("student:3", 123456, 30.0)
        assert await marks.recall("student:3") == 123456
        assert await state.ping() is True
    finally:
        await state.close()
