"""Redis leaderboards rank exactly like PostgreSQL, follow committed scores and rebuild when lost."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from loaders.leaderboards import BoardKey, fetch_rank, fetch_top
from loaders.live_boards import BoardRow
from mlc_graph.app import create_app
from mlc_graph.keys import REALTIME
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.events import ScoreCommitted
from mlc_graph.platform.redis import RedisState
from mlc_graph.realtime.live_boards import LiveLeaderboards, decode_entry, encode_member
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.http import http_settings, token
from tests.support.redis_server import RedisServer

redis_prefix = redis_support.redis_prefix
redis_state = redis_support.redis_state
redis_server = redis_support.redis_server

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _school(pool: asyncpg.Pool) -> tuple[int, int, int, list[int], list[int]]:
    """Two organizations; org A has two classes. Returns (game, org_a, teacher_a1, students A, students B)."""
    org_a = await factories.make_org(pool, "A")
    org_b = await factories.make_org(pool, "B")
    t_a1 = await factories.make_teacher(pool, org_a)
    t_a2 = await factories.make_teacher(pool, org_a)
    t_b = await factories.make_teacher(pool, org_b)
    a1 = await factories.make_students(pool, org_a, t_a1, 6)
    a2 = await factories.make_students(pool, org_a, t_a2, 4)
    b = await factories.make_students(pool, org_b, t_b, 5)
    _, _, games = await factories.make_catalogue(pool, games=1)
    return games[0], org_a, t_a1, a1 + a2, b


async def _tied_scores(
    pool: asyncpg.Pool, game: int, org_a: int, a: list[int], org_b: int, b: list[int]
) -> None:
    """Ties on score, on score and second, and on score and microsecond (then student id decides)."""
    plan = [
        (a[0], 900, T0),
        (a[1], 900, T0),  # same score, same instant: lower id first
        (a[2], 900, T0 + timedelta(microseconds=1)),  # one microsecond later
        (a[3], 950, T0 + timedelta(hours=1)),
        (a[4], 900, T0 - timedelta(microseconds=1)),
        (a[5], 10, T0),
        (a[6], 900, T0),
        (a[7], 500, T0 + timedelta(days=3)),
        (b[0], 900, T0),
        (b[1], 950, T0 + timedelta(hours=1)),
        (b[2], 0, T0),
        (b[3], 900, T0 + timedelta(microseconds=1)),
    ]
    orgs = {**dict.fromkeys(a, org_a), **dict.fromkeys(b, org_b)}
    for student, score, at in plan:
        await factories.make_score(pool, orgs[student], student, game, score, at=at)


def _sql_order(rows: Sequence[object]) -> list[tuple[int, int, int, datetime]]:
    return [(r.rank, r.student_id, r.score, r.achieved_at) for r in rows]  # type: ignore[attr-defined]


async def test_redis_order_equals_postgresql_order(clean_db: asyncpg.Pool, redis_state: RedisState) -> None:
    game, org_a, t_a1, a, b = await _school(clean_db)
    org_b = await clean_db.fetchval("SELECT org_id FROM students WHERE id = $1", b[0])
    await _tied_scores(clean_db, game, org_a, a, org_b, b)
    boards = LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    for board in (
        BoardKey(game, "GLOBAL", None),
        BoardKey(game, "ORGANIZATION", org_a),
        BoardKey(game, "ORGANIZATION", org_b),
        BoardKey(game, "CLASS", t_a1),
    ):
        expected = await fetch_top(db, board, 100)
        live = await boards.read(db, board, 100)
        assert live.rebuilt
        assert _sql_order(live.entries) == _sql_order(expected)
        assert live.size == len(expected)
        # The viewer's own rank agrees with the SQL rank query too.
        on_board = {r.student_id for r in expected}
        for student in (s for s in (a[2], a[6], b[3]) if s in on_board):
            sql_mine = await fetch_rank(db, board, student)
            mine = (await boards.read(db, board, 3, student)).viewer
            assert (mine is None) == (sql_mine is None)
            if mine is not None and sql_mine is not None:
                assert (mine.rank, mine.score, mine.achieved_at) == (
                    sql_mine.rank,
                    sql_mine.score,
                    sql_mine.achieved_at,
                )


async def test_committed_scores_update_all_three_boards(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    game, org_a, t_a1, a, _ = await _school(clean_db)
    boards = LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    changed: list[list[BoardKey]] = []

    async def listener(keys: Sequence[BoardKey]) -> None:
        changed.append(list(keys))

    boards.on_change(listener)
    global_board = BoardKey(game, "GLOBAL", None)
    assert (await boards.read(db, global_board, 10)).entries == []  # built, empty

    async def commit(student: int, score: int, at: datetime, best: int) -> None:
        await factories.make_score(clean_db, org_a, student, game, score, at=at)
        best_at = await clean_db.fetchval(
            "SELECT achieved_at FROM best_scores WHERE game_id = $1 AND student_id = $2", game, student
        )
        await boards.score_committed(
            ScoreCommitted(1, game, student, org_a, t_a1, score, "challenge", best, best_at)
        )

    await commit(a[0], 700, T0, 700)
    await commit(a[1], 700, T0, 700)
    await commit(a[0], 650, T0 + timedelta(minutes=1), 700)  # not a new best: no change
    await commit(a[1], 800, T0 + timedelta(minutes=2), 800)
    assert [len(c) for c in changed] == [3, 3, 3]
    for board in (global_board, BoardKey(game, "ORGANIZATION", org_a), BoardKey(game, "CLASS", t_a1)):
        live = await boards.read(db, board, 10, a[0])
        assert _sql_order(live.entries) == _sql_order(await fetch_top(db, board, 10))
        assert [(e.student_id, e.score) for e in live.entries] == [(a[1], 800), (a[0], 700)]
        assert live.viewer is not None
        assert live.viewer.rank == 2


async def test_a_lost_board_is_rebuilt_from_postgresql(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    game, org_a, _, a, _ = await _school(clean_db)
    await factories.make_score(clean_db, org_a, a[0], game, 300, at=T0)
    boards = LiveLeaderboards(redis_state)
    stats = QueryStats()
    db = Executor(clean_db, stats)
    board = BoardKey(game, "ORGANIZATION", org_a)
    first = await boards.read(db, board, 10)
    assert first.rebuilt
    assert stats.statements == 1
    again = await boards.read(db, board, 10)
    assert not again.rebuilt
    assert stats.statements == 1  # served from Redis alone
    client = redis_state.client
    assert client is not None
    await client.delete(*boards.keys(board))
    third = await boards.read(db, board, 10)
    assert third.rebuilt
    assert third.entries == first.entries


async def test_redis_restart_mid_test(clean_db: asyncpg.Pool, redis_server: RedisServer) -> None:
    """Scores committed while Redis is down raise nothing; the board comes back from PostgreSQL."""
    game, org_a, t_a1, a, _ = await _school(clean_db)
    state = RedisState(redis_server.url, probe_seconds=0.0)
    boards = LiveLeaderboards(state)
    db = Executor(clean_db, QueryStats())
    board = BoardKey(game, "CLASS", t_a1)
    try:
        await boards.read(db, board, 10)
        redis_server.stop()
        await factories.make_score(clean_db, org_a, a[0], game, 640, at=T0)
        await boards.score_committed(ScoreCommitted(1, game, a[0], org_a, t_a1, 640, "challenge", 640, T0))
        redis_server.start()
        live = await boards.read(db, board, 10)
        assert live.rebuilt
        assert [(e.student_id, e.score, e.achieved_at) for e in live.entries] == [(a[0], 640, T0)]
    finally:
        await state.close()


async def test_missed_writes_mark_the_board_stale_when_redis_returns(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    """Redis unreachable but not restarted: its boards still exist, yet they missed writes."""
    game, org_a, t_a1, a, _ = await _school(clean_db)
    boards = LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    board = BoardKey(game, "CLASS", t_a1)
    await boards.read(db, board, 10)
    redis_state.mark_down(ConnectionError("simulated partition"))
    await factories.make_score(clean_db, org_a, a[0], game, 420, at=T0)
    await boards.score_committed(ScoreCommitted(1, game, a[0], org_a, t_a1, 420, "challenge", 420, T0))
    redis_state._down_until = 0.0  # the probe interval has passed
    live = await boards.read(db, board, 10)
    assert live.rebuilt
    assert [(e.student_id, e.score) for e in live.entries] == [(a[0], 420)]


LEADERBOARD = """
query Board($game: ID!, $scope: LeaderboardScope!) {
  leaderboard(gameId: $game, scope: $scope, first: 20) {
    scope
    entries { rank score achievedAt displayName student { id firstName } }
    viewerEntry { rank score achievedAt displayName }
  }
}
"""


async def test_query_leaderboard_reads_redis_with_the_same_answer(
    clean_db: asyncpg.Pool, database_url: str, redis_prefix: str
) -> None:
    """Same JSON from the live board as from PostgreSQL, for every scope and kind of viewer."""
    game, org_a, t_a1, a, b = await _school(clean_db)
    org_b = await clean_db.fetchval("SELECT org_id FROM students WHERE id = $1", b[0])
    await _tied_scores(clean_db, game, org_a, a, org_b, b)
    viewers = [
        token("student", a[2], org_a),
        token("student", b[3], org_b),
        token("teacher", t_a1, org_a),
    ]
    variables = [
        {"game": encode_global_id("Game", game), "scope": s} for s in ("GLOBAL", "ORGANIZATION", "CLASS")
    ]
    answers: dict[str, list[Any]] = {}
    statements: dict[str, list[int]] = {}
    live = http_settings(database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    for name, settings in (("sql", http_settings(database_url)), ("redis", live)):
        async with TestClient(TestServer(create_app(settings))) as client:
            for _ in range(2):  # the second round reads boards that already exist
                answers[name], statements[name] = [], []
                for bearer_token in viewers:
                    for v in variables:
                        response = await client.post(
                            "/graphql",
                            json={"query": LEADERBOARD, "variables": v},
                            headers={"Authorization": f"Bearer {bearer_token}"},
                        )
                        body = await response.json()
                        assert "errors" not in body, body
                        answers[name].append(body["data"])
                        statements[name].append(body["extensions"]["sqlStatements"])
    assert answers["redis"] == answers["sql"]
    cross_org = [
        e for d in answers["redis"][3:6] for e in d["leaderboard"]["entries"] if e["student"] is None
    ]
    assert cross_org
    assert all(e["displayName"].startswith("Player ") for e in cross_org if "First" not in e["displayName"])
    # From Redis (the second round: boards built), every read costs the game lookup and one batch of the
    # `student` rows the viewer may see (a student's own class comes with it): the names come with the
    # lines. Before lines carried names, a third statement loaded them.
    assert statements["redis"] == [2] * len(viewers) * len(variables)
    assert sum(statements["redis"]) < sum(statements["sql"])


async def test_server_keeps_serving_through_a_redis_outage(
    clean_db: asyncpg.Pool, database_url: str, redis_server: RedisServer
) -> None:
    """Redis stopped mid-test: requests succeed (quotas count in process), scores still commit, and the
    board is rebuilt from PostgreSQL when Redis comes back empty."""
    game, org_a, _, a, _ = await _school(clean_db)
    settings = http_settings(database_url, redis_url=redis_server.url)
    player = {"Authorization": f"Bearer {token('student', a[0], org_a)}"}
    variables = {"game": encode_global_id("Game", game), "scope": "ORGANIZATION"}
    submit = "mutation($input: SubmitScoreInput!) { submitScore(input: $input) { clientMutationId } }"

    async def call(client: TestClient[Any, Any], query: str, variables: Any) -> tuple[int, Any]:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=player
        )
        return response.status, await response.json()

    async with TestClient(TestServer(create_app(settings))) as client:
        status, body = await call(client, LEADERBOARD, variables)
        assert (status, body["data"]["leaderboard"]["entries"]) == (200, [])
        redis_server.stop()
        for score in (300, 450):
            key = f"outage-{score}"
            status, body = await call(
                client,
                submit,
                {
                    "input": {
                        "gameId": variables["game"],
                        "score": score,
                        "stage": "CHALLENGE",
                        "idempotencyKey": key,
                    }
                },
            )
            assert (status, body.get("errors")) == (200, None)
        status, body = await call(client, "{ viewer { rateLimit { shared used } } }", None)
        assert (status, body["data"]["viewer"]["rateLimit"]["shared"]) == (200, False)
        status, body = await call(client, LEADERBOARD, variables)  # read from PostgreSQL meanwhile
        assert [e["score"] for e in body["data"]["leaderboard"]["entries"]] == [450]
        redis_server.start()
        await asyncio.sleep(1.1)  # the probe interval: the next call tries Redis again
        status, body = await call(client, LEADERBOARD, variables)
        assert [e["score"] for e in body["data"]["leaderboard"]["entries"]] == [450]
        live = subscriptions_realtime(client)
        assert live.redis.client is not None
        assert await live.redis.client.exists(live.boards.keys(BoardKey(game, "ORGANIZATION", org_a))[0]) == 1
        status, body = await call(client, "{ viewer { rateLimit { shared } } }", None)
        assert body["data"]["viewer"]["rateLimit"]["shared"] is True


def subscriptions_realtime(client: TestClient[Any, Any]) -> Any:
    return client.app[REALTIME]


async def test_random_boards_with_many_ties_rank_like_postgresql(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    """Seeded random boards where most lines tie on score and many on time: Redis order == SQL order."""
    game, org_a, t_a1, _, b = await _school(clean_db)
    org_b = await clean_db.fetchval("SELECT org_id FROM students WHERE id = $1", b[0])
    students = await clean_db.fetch("SELECT id, org_id, teacher_id FROM students ORDER BY id")
    boards = LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    client = redis_state.client
    assert client is not None
    rng = random.Random(5)
    for _ in range(30):
        await clean_db.execute("DELETE FROM best_scores WHERE game_id = $1", game)
        chosen = rng.sample(list(students), rng.randint(1, len(students)))
        await clean_db.executemany(
            "INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (
                    game,
                    s["id"],
                    s["org_id"],
                    s["teacher_id"],
                    rng.choice([0, 5, 5, 7]),
                    T0 + timedelta(microseconds=rng.choice([0, 0, 1, 999_999, 10**6])),
                )
                for s in chosen
            ],
        )
        for board in (
            BoardKey(game, "GLOBAL", None),
            BoardKey(game, "ORGANIZATION", rng.choice([org_a, org_b])),
            BoardKey(game, "CLASS", t_a1),
        ):
            await client.delete(*boards.keys(board))
            live = await boards.read(db, board, 100)
            assert _sql_order(live.entries) == _sql_order(await fetch_top(db, board, 100))


async def test_an_unchanged_page_is_reused_and_a_changed_one_read_anew(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    """Lines decoded for a page are reused only while Redis returns the same members and scores; a write
    from another instance (its own LiveLeaderboards) shows on this one's next read."""
    game, org_a, t_a1, a, _ = await _school(clean_db)
    reader, writer = LiveLeaderboards(redis_state), LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    board = BoardKey(game, "GLOBAL", None)
    for i, student in enumerate(a[:3]):
        await factories.make_score(clean_db, org_a, student, game, 100 * (i + 1), at=T0)
    first = await reader.read(db, board, 10)
    again = await reader.read(db, board, 10)
    assert [e.student_id for e in first.entries] == [a[2], a[1], a[0]]
    assert again.entries == first.entries and again.entries[0] is first.entries[0]  # reused
    assert again.entries is not first.entries  # each caller gets its own list
    shorter = await reader.read(db, board, 2)
    assert [e.student_id for e in shorter.entries] == [a[2], a[1]]

    await factories.make_score(clean_db, org_a, a[0], game, 900, at=T0 + timedelta(minutes=1))
    best_at = T0 + timedelta(minutes=1)
    await writer.score_committed(ScoreCommitted(1, game, a[0], org_a, t_a1, 900, "challenge", 900, best_at))
    after = await reader.read(db, board, 10)
    assert [(e.rank, e.student_id, e.score) for e in after.entries] == [
        (1, a[0], 900), (2, a[2], 300), (3, a[1], 200)
    ]  # fmt: skip
    assert _sql_order(after.entries) == _sql_order(await fetch_top(db, board, 10))


def test_a_member_carries_any_name_and_old_members_read_without_names() -> None:
    at = T0 + timedelta(microseconds=7)
    named = BoardRow(12, 3, 4, 880, at, "Ana: María", "O'Neil-Łukasz")
    member = encode_member(named)
    entry = decode_entry(member, -880.0, 5)
    assert (entry.rank, entry.student_id, entry.org_id, entry.teacher_id, entry.score, entry.achieved_at) == (
        5, 12, 3, 4, 880, at
    )  # fmt: skip
    assert (entry.first_name, entry.last_name) == ("Ana: María", "O'Neil-Łukasz")
    # A line written before names were kept (and any row without them) decodes with none.
    old = encode_member(BoardRow(12, 3, 4, 880, at))
    assert member.startswith(old + ":")
    assert (decode_entry(old, -880.0, 5).first_name, decode_entry(old, -880.0, 5).last_name) == (None, None)


async def test_lines_carry_names_from_rebuilds_and_writes(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    game, org_a, t_a1, a, b = await _school(clean_db)
    org_b = await clean_db.fetchval("SELECT org_id FROM students WHERE id = $1", b[0])
    await _tied_scores(clean_db, game, org_a, a, org_b, b)
    boards = LiveLeaderboards(redis_state)
    db = Executor(clean_db, QueryStats())
    board = BoardKey(game, "GLOBAL", None)
    expected = await fetch_top(db, board, 100)
    live = await boards.read(db, board, 100)
    assert [(e.student_id, e.first_name, e.last_name) for e in live.entries] == [
        (r.student_id, r.first_name, r.last_name) for r in expected
    ]
    # A committed score names the student on all three boards.
    best_at = T0 + timedelta(days=9)
    await boards.score_committed(
        ScoreCommitted(1, game, a[5], org_a, t_a1, 999, "challenge", 999, best_at, "Zoë", "Ng")
    )
    for key in (board, BoardKey(game, "ORGANIZATION", org_a), BoardKey(game, "CLASS", t_a1)):
        top = (await boards.read(db, key, 1)).entries[0]
        assert (top.student_id, top.first_name, top.last_name) == (a[5], "Zoë", "Ng")


async def test_a_line_without_names_is_named_from_postgresql_until_a_rebuild_rewrites_it(
    clean_db: asyncpg.Pool, database_url: str, redis_prefix: str
) -> None:
    """Boards written before lines carried names keep answering with the real names (one statement more),
    and a rebuild replaces those lines with named ones (the tie rule compares only the ordering part)."""
    game, org_a, _, a, _ = await _school(clean_db)
    for i, student in enumerate(a[:3]):
        await factories.make_score(clean_db, org_a, student, game, 100 * (i + 1), at=T0)
    settings = http_settings(database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    variables = {"game": encode_global_id("Game", game), "scope": "GLOBAL"}
    viewer = {"Authorization": f"Bearer {token('student', a[3], org_a)}"}  # a classmate not on the board
    async with TestClient(TestServer(create_app(settings))) as client:

        async def ask() -> tuple[list[str], int]:
            response = await client.post(
                "/graphql", json={"query": LEADERBOARD, "variables": variables}, headers=viewer
            )
            body = await response.json()
            assert "errors" not in body, body
            names = [e["displayName"] for e in body["data"]["leaderboard"]["entries"]]
            return names, body["extensions"]["sqlStatements"]

        await ask()  # builds the board, with names
        named, statements = await ask()
        assert named == ["First3 L.", "First2 L.", "First1 L."] and statements == 1  # the game only
        boards = client.app[REALTIME].boards
        assert boards is not None
        keys = boards.keys(BoardKey(game, "GLOBAL", None))
        redis = boards.redis.client
        assert redis is not None
        # Rewrite the board as an older release left it: the same lines, no names.
        members = await redis.zrange(keys[0], 0, -1, withscores=True)
        await redis.delete(keys[0])
        for member, neg in cast(list[tuple[bytes | str, float]], members):
            entry = decode_entry(member.decode() if isinstance(member, bytes) else member, neg, 1)
            row = BoardRow(entry.student_id, entry.org_id, entry.teacher_id, entry.score, entry.achieved_at)
            await redis.zadd(keys[0], {encode_member(row): neg})
            await redis.hset(keys[1], str(entry.student_id), encode_member(row))
        unnamed, more = await ask()
        assert unnamed == named and more == statements + 1  # the names from PostgreSQL
        await redis.hdel(keys[1], "_built")  # what an outage or a lost board leads to
        rebuilt, _ = await ask()
        again, after = await ask()
        assert rebuilt == again == named and after == statements
        assert all(
            ":First" in (m.decode() if isinstance(m, bytes) else m)
            for m in await redis.zrange(keys[0], 0, -1)
        )


SUBMIT = """
mutation($game: ID!, $key: String!) {
  submitScore(input: {gameId: $game, score: 990, stage: CHALLENGE, idempotencyKey: $key}) { rank }
}
"""
SUBMIT_OFFLINE = """
mutation($game: ID!, $key: String!, $at: DateTime!) {
  submitScores(input: {plays: [{gameId: $game, score: 995, stage: CHALLENGE, idempotencyKey: $key,
                                playedAt: $at}]}) { accepted }
}
"""


async def test_both_score_mutations_write_named_lines(
    clean_db: asyncpg.Pool, database_url: str, redis_prefix: str
) -> None:
    game, org_a, _, a, _ = await _school(clean_db)
    names = {
        r["id"]: r["name"]
        for r in await clean_db.fetch("SELECT id, first_name || '/' || last_name AS name FROM students")
    }
    settings = http_settings(database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    game_id = encode_global_id("Game", game)
    async with TestClient(TestServer(create_app(settings))) as client:
        boards = client.app[REALTIME].boards
        db = Executor(clean_db, QueryStats())
        board = BoardKey(game, "GLOBAL", None)
        assert (await boards.read(db, board, 10)).entries == []  # built before the writes
        for student, document, extra in (
            (a[1], SUBMIT, {}),
            (a[2], SUBMIT_OFFLINE, {"at": datetime.now(UTC).isoformat()}),
        ):
            response = await client.post(
                "/graphql",
                json={"query": document, "variables": {"game": game_id, "key": f"k{student}", **extra}},
                headers={"Authorization": f"Bearer {token('student', student, org_a)}"},
            )
            body = await response.json()
            assert "errors" not in body, body
        lines = (await boards.read(db, board, 10)).entries
        assert [(e.student_id, f"{e.first_name}/{e.last_name}") for e in lines] == [
            (a[2], names[a[2]]), (a[1], names[a[1]])
        ]  # fmt: skip
