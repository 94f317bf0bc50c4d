"""submitScores over real PostgreSQL (and Redis for the live boards): offline plays replayed in one request."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import replace
from typing import Any

import asyncpg
from graphql import ExecutionResult, execute, parse

from loaders.leaderboards import BoardKey
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.events import EventBus, ScoreCommitted
from mlc_graph.platform.redis import RedisState
from mlc_graph.realtime.live_boards import LiveLeaderboards
from resolvers.context import make_context
from resolvers.schema import schema
from tests.resolvers.test_changes import keys, settle, sync, sync_all
from tests.support import redis_server as redis_support
from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal, run

redis_prefix = redis_support.redis_prefix
redis_state = redis_support.redis_state

SUBMIT_SCORES = """
mutation Replay($input: SubmitScoresInput!) {
  submitScores(input: $input) {
    clientMutationId accepted
    results { idempotencyKey status refusal message score { id score stage createdAt } }
    standings { game { id } bestScore { score achievedAt } rank }
  }
}
"""
NOW = dt.datetime.now(dt.UTC)


def play(game: int, score: int, key: str, played_at: dt.datetime, stage: str = "CHALLENGE") -> dict[str, Any]:
    return {"gameId": gid("Game", game), "score": score, "stage": stage, "idempotencyKey": key,
            "playedAt": played_at.isoformat()}  # fmt: skip


async def replay(
    pool: asyncpg.Pool,
    viewer: Principal,
    plays: list[dict[str, Any]],
    events: EventBus | None = None,
    settings: Settings | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], QueryStats]:
    """One submitScores call (graphql-core, with the given event bus and settings); fails on any error."""
    stats = QueryStats(keep_texts=True)
    context = make_context(settings or Settings(), Executor(pool, stats), viewer, events=events)
    variables = {"input": {"plays": plays, **extra}}
    result = execute(schema._schema, parse(SUBMIT_SCORES), context_value=context, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    assert result.errors is None, result.errors
    assert result.data is not None
    payload: dict[str, Any] = result.data["submitScores"]
    return payload, stats


def listening() -> tuple[EventBus, list[ScoreCommitted]]:
    events, seen = EventBus(), []

    async def listen(event: ScoreCommitted) -> None:
        seen.append(event)

    events.on_score(listen)
    return events, seen


async def _class(pool: asyncpg.Pool) -> tuple[int, int, list[int], list[int]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, 3)
    _, _, games = await make_catalogue(pool, games=3)
    return org, teacher, students, games


async def test_a_phone_offline_for_a_day_replays_fifty_plays_twice_and_syncs_exactly(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    """The issue's "Shown": sync, offline, 50 plays, replay twice, sync; exact scores, bests, ranks, delta."""
    org, _, (me, rival, _), games = await _class(clean_db)
    game_of = {gid("Game", g): g for g in games}
    await make_assignments(clean_db, org, [me], games[:2])
    # Assigned the day before: a play completes an assignment only if it came after it.
    await clean_db.execute("UPDATE assignments SET created_at = $1", NOW - dt.timedelta(days=3))
    # A rival already on the boards online: ranks depend on both.
    for game, value in zip(games, (700, 400, 990), strict=True):
        await make_score(clean_db, org, rival, game, value, at=NOW - dt.timedelta(days=2))
    student = principal("student", me, org)
    boards = LiveLeaderboards(redis_state)
    events, seen = listening()
    events.on_score(boards.score_committed)
    db = Executor(clean_db, QueryStats())
    for game in games:  # the boards are built (as a reader would) before the phone goes offline
        await boards.read(db, BoardKey(game, "GLOBAL", None), 10)

    token = (await sync(clean_db, student, None))[0]["nextToken"]
    # Offline from 06:00 to 14:00 yesterday-ish: 50 plays, in the order played, on three games.
    rng = random.Random(1515)
    start = NOW - dt.timedelta(hours=30)
    plays = [
        play(rng.choice(games), rng.randrange(0, 1001), f"phone-{i:02d}", start + dt.timedelta(minutes=9 * i),
             rng.choice(["CHALLENGE", "PRACTICE"]))
        for i in range(50)
    ]  # fmt: skip
    first, stats = await replay(clean_db, student, plays, events, clientMutationId="r1")
    assert first["clientMutationId"] == "r1" and first["accepted"] == 50
    assert [r["status"] for r in first["results"]] == ["ACCEPTED"] * 50
    assert [r["score"]["createdAt"] for r in first["results"]] == [p["playedAt"] for p in plays]
    # student, games, partitions check, claims, one write for all 50, rank + results; payload: games.
    assert stats.statements == 7, stats.texts

    # The response was lost: the phone sends the same batch again.
    again, _ = await replay(clean_db, student, plays, events)
    assert again["accepted"] == 0
    assert [r["status"] for r in again["results"]] == ["REPLAYED"] * 50
    assert [r["score"] for r in again["results"]] == [r["score"] for r in first["results"]]
    assert again["standings"] == first["standings"]

    # Exactly 50 scores, each in the month it was played.
    rows = await clean_db.fetch(
        "SELECT id, score, stage, created_at, tableoid::regclass::text AS part FROM scores WHERE student_id = $1",
        me,
    )
    assert len(rows) == 50
    assert all(r["part"] == f"scores_{r['created_at']:%Y_%m}" for r in rows)
    # Best scores: per game, the highest challenge play, first reached (computed here from the plays).
    expected_best: dict[int, tuple[int, str]] = {}
    for p in plays:
        if p["stage"] != "CHALLENGE":
            continue
        game = game_of[p["gameId"]]
        held = expected_best.get(game)
        if held is None or p["score"] > held[0]:
            expected_best[game] = (p["score"], p["playedAt"])
    stored = {
        r["game_id"]: (r["score"], r["achieved_at"].isoformat())
        for r in await clean_db.fetch(
            "SELECT game_id, score, achieved_at FROM best_scores WHERE student_id = $1", me
        )
    }
    assert stored == expected_best
    # Ranks: on each GLOBAL board, the rival is ahead only with a higher score (theirs came earlier).
    rival_best = dict(zip(games, (700, 400, 990), strict=True))
    expected_rank = {g: 2 if rival_best[g] >= best[0] else 1 for g, best in expected_best.items()}
    assert {gid("Game", g): r for g, r in expected_rank.items()} == {
        s["game"]["id"]: s["rank"] for s in first["standings"]
    }
    board_query = (
        "query($g: ID!) { leaderboard(gameId: $g, scope: GLOBAL, first: 5) { viewerEntry { rank score } } }"
    )
    for game, rank in expected_rank.items():
        result, _ = await run(clean_db, board_query, {"g": gid("Game", game)}, student)
        assert result.data is not None
        assert result.data["leaderboard"]["viewerEntry"] == {"rank": rank, "score": expected_best[game][0]}
        live = await boards.read(db, BoardKey(game, "GLOBAL", None), 10, me)
        assert live.viewer is not None and (live.viewer.rank, live.viewer.score) == (
            rank,
            expected_best[game][0],
        )
        assert not live.rebuilt  # kept current by the batch's events, not rebuilt from PostgreSQL
    # The live boards moved once per game for the whole batch, and not at all for the retry.
    assert sorted(e.game_id for e in seen) == sorted({game_of[p["gameId"]] for p in plays})

    # Back online: the delta holds exactly what changed, once.
    await settle(clean_db)
    delta, _ = await sync_all(clean_db, student, token, 30)
    score_ids = {gid("Score", r["id"]) for r in rows}
    got = keys(delta)
    assert sorted(k for k in got if k[0] == "SCORE") == sorted(("SCORE", i, "UPSERT") for i in score_ids)
    assert sorted(k for k in got if k[0] == "BEST_SCORE") == sorted(
        ("BEST_SCORE", f"{gid('BestScore', me)}.{g}", "UPSERT") for g in expected_best
    )
    played = {game_of[p["gameId"]] for p in plays}
    assignment_ids = [
        r["id"]
        for r in await clean_db.fetch(
            "SELECT id FROM assignments WHERE student_id = $1 AND game_id = ANY($2)", me, list(played)
        )
    ]
    assert sorted(k for k in got if k[0] == "ASSIGNMENT") == sorted(
        ("ASSIGNMENT", gid("Assignment", a), "UPSERT") for a in assignment_ids
    )
    assert [k for k in got if k[0] == "STUDENT"] == [("STUDENT", gid("Student", me), "UPSERT")]
    assert len(got) == 50 + len(expected_best) + len(assignment_ids) + 1
    student_node = next(c["node"] for c in delta if c["entity"] == "STUDENT")
    assert student_node["lastActiveAt"] == max(p["playedAt"] for p in plays)
    assert (await sync(clean_db, student, (await sync_all(clean_db, student, token))[1]))[0]["changes"] == []


async def test_each_play_is_accepted_or_refused_on_its_own(clean_db: asyncpg.Pool) -> None:
    org, _, (me, _, _), games = await _class(clean_db)
    _, _, (draft,) = await make_catalogue(clean_db, games=1, status="draft")
    student = principal("student", me, org)
    hour = dt.timedelta(hours=1)
    plays = [
        play(games[0], 500, "ok", NOW - hour),
        play(games[0], 2000, "range", NOW - hour),
        play(draft, 10, "draft", NOW - hour),
        {**play(games[0], 10, "bad-id", NOW - hour), "gameId": "nonsense"},
        play(games[0], 10, "future", NOW + dt.timedelta(hours=2)),
        play(games[0], 10, "old", NOW - dt.timedelta(days=8)),
        {
            **play(games[0], 10, "naive", NOW - hour),
            "playedAt": (NOW - hour).replace(tzinfo=None).isoformat(),
        },
        play(games[0], 10, "", NOW - hour),
        play(games[0], 600, "ok", NOW - hour),
        play(games[1], 10, "skewed", NOW + dt.timedelta(minutes=2), "PRACTICE"),
    ]
    payload, _ = await replay(clean_db, student, plays)
    outcome = [(r["idempotencyKey"], r["status"], r["refusal"]) for r in payload["results"]]
    assert outcome == [
        ("ok", "ACCEPTED", None),
        ("range", "REFUSED", "SCORE_OUT_OF_RANGE"),
        ("draft", "REFUSED", "UNKNOWN_GAME"),
        ("bad-id", "REFUSED", "UNKNOWN_GAME"),
        ("future", "REFUSED", "PLAYED_IN_THE_FUTURE"),
        ("old", "REFUSED", "PLAYED_TOO_LONG_AGO"),
        ("naive", "REFUSED", "PLAYED_AT_WITHOUT_OFFSET"),
        ("", "REFUSED", "BAD_IDEMPOTENCY_KEY"),
        ("ok", "REFUSED", "DUPLICATE_IN_BATCH"),
        ("skewed", "ACCEPTED", None),  # a fast clock within the allowed skew
    ]
    assert all(r["message"] for r in payload["results"] if r["status"] == "REFUSED")
    assert payload["accepted"] == 2
    assert await clean_db.fetchval("SELECT count(*) FROM scores") == 2
    # The same key later with another play is refused; with the same play it is a replay, even via submitScore.
    reused, _ = await replay(clean_db, student, [play(games[0], 501, "ok", NOW - hour)])
    assert (reused["results"][0]["status"], reused["results"][0]["refusal"]) == ("REFUSED", "KEY_REUSED")
    single = """mutation($input: SubmitScoreInput!) { submitScore(input: $input) { score { id } rank } }"""
    variables = {
        "input": {"gameId": gid("Game", games[0]), "score": 500, "stage": "CHALLENGE", "idempotencyKey": "ok"}
    }
    result, _ = await run(clean_db, single, variables, student)
    assert result.errors is None and result.data is not None
    assert result.data["submitScore"] == {"score": {"id": payload["results"][0]["score"]["id"]}, "rank": 1}


async def test_the_statement_count_is_the_same_for_one_play_and_a_hundred(clean_db: asyncpg.Pool) -> None:
    org, _, (me, other, _), games = await _class(clean_db)
    one, one_stats = await replay(clean_db, principal("student", me, org), [play(games[0], 5, "a", NOW)])
    many = [play(games[i % 3], i, f"k{i}", NOW - dt.timedelta(minutes=i)) for i in range(100)]
    hundred, hundred_stats = await replay(clean_db, principal("student", other, org), many)
    assert one["accepted"] == 1 and hundred["accepted"] == 100
    assert one_stats.statements == hundred_stats.statements == 7
    retry, retry_stats = await replay(clean_db, principal("student", other, org), many)
    # claims, then the stored results instead of the write and the ranking.
    assert retry["accepted"] == 0 and retry_stats.statements == 6


async def test_concurrent_retries_of_one_batch_write_each_play_once(clean_db: asyncpg.Pool) -> None:
    org, _, (me, _, _), games = await _class(clean_db)
    student = principal("student", me, org)
    plays = [play(games[i % 2], 10 * i, f"c{i}", NOW - dt.timedelta(minutes=i)) for i in range(30)]
    events, seen = listening()
    answers = await asyncio.gather(*(replay(clean_db, student, plays, events) for _ in range(6)))
    assert await clean_db.fetchval("SELECT count(*) FROM scores WHERE student_id = $1", me) == 30
    assert sum(a["accepted"] for a, _ in answers) == 30
    for index in range(30):
        statuses = sorted(a["results"][index]["status"] for a, _ in answers)
        assert statuses == ["ACCEPTED"] + ["REPLAYED"] * 5
        assert len({a["results"][index]["score"]["id"] for a, _ in answers}) == 1
    assert len(seen) == len({e.game_id for e in seen}) <= 2 * 6  # once per game per writing call


async def test_plays_land_in_the_month_they_were_played_creating_it_if_needed(clean_db: asyncpg.Pool) -> None:
    org, _, (me, _, _), games = await _class(clean_db)
    long_ago = NOW - dt.timedelta(days=31 * 27)  # beyond the 24 months of partitions made ahead of time
    month = f"scores_{long_ago:%Y_%m}"
    await clean_db.execute(f"DROP TABLE IF EXISTS {month}")
    settings = replace(Settings(), offline_replay_days=31 * 28)
    payload, _ = await replay(
        clean_db, principal("student", me, org), [play(games[0], 10, "then", long_ago), play(games[0], 20, "now", NOW)],
        settings=settings,
    )  # fmt: skip
    assert payload["accepted"] == 2
    parts = await clean_db.fetch(
        "SELECT score, tableoid::regclass::text AS part FROM scores WHERE student_id = $1 ORDER BY score", me
    )
    assert [(r["score"], r["part"]) for r in parts] == [(10, month), (20, f"scores_{NOW:%Y_%m}")]
    # Reports and boards count by when it was played: the best is the later play, first reached now.
    best = await clean_db.fetchrow("SELECT score, achieved_at FROM best_scores WHERE student_id = $1", me)
    assert best is not None and (best["score"], best["achieved_at"]) == (20, NOW)
    await clean_db.execute(f"DROP TABLE {month}")


async def test_an_offline_tie_reached_earlier_takes_the_line_in_postgres_and_redis(
    clean_db: asyncpg.Pool, redis_state: RedisState
) -> None:
    org, _, (me, rival, _), games = await _class(clean_db)
    boards = LiveLeaderboards(redis_state)
    events = EventBus()
    events.on_score(boards.score_committed)
    db = Executor(clean_db, QueryStats())
    online = principal("student", me, org)
    single = """mutation($input: SubmitScoreInput!) { submitScore(input: $input) { rank } }"""
    await make_score(clean_db, org, rival, games[0], 800, at=NOW - dt.timedelta(hours=3))
    board = BoardKey(games[0], "GLOBAL", None)
    await boards.read(db, board, 10)
    context = make_context(Settings(), Executor(clean_db, QueryStats()), online, events=events)
    variables = {
        "input": {"gameId": gid("Game", games[0]), "score": 800, "stage": "CHALLENGE", "idempotencyKey": "on"}
    }
    result = await execute(schema._schema, parse(single), context_value=context, variable_values=variables)  # type: ignore[misc]
    assert result.errors is None and result.data == {
        "submitScore": {"rank": 2}
    }  # the rival reached 800 first
    # The same 800, played offline four hours ago, replayed now: the student reached it first after all.
    payload, _ = await replay(
        clean_db, online, [play(games[0], 800, "off", NOW - dt.timedelta(hours=4))], events
    )
    assert payload["standings"][0]["rank"] == 1
    assert payload["standings"][0]["bestScore"]["achievedAt"] == (NOW - dt.timedelta(hours=4)).isoformat()
    live = await boards.read(db, board, 10, me)
    assert [(e.rank, e.student_id) for e in live.entries] == [(1, me), (2, rival)] and not live.rebuilt


async def test_batches_are_bounded_and_staff_replay_for_their_own_class(clean_db: asyncpg.Pool) -> None:
    org, teacher, (me, _, _), games = await _class(clean_db)
    other = await make_teacher(clean_db, org, "Otto")
    for plays in ([], [play(games[0], 1, f"k{i}", NOW) for i in range(101)]):
        context = make_context(Settings(), Executor(clean_db, QueryStats()), principal("student", me, org))
        result = await execute(schema._schema, parse(SUBMIT_SCORES), context_value=context,  # type: ignore[misc]
                               variable_values={"input": {"plays": plays}})  # fmt: skip
        assert result.errors is not None and result.errors[0].extensions["code"] == "BAD_USER_INPUT"
    payload, _ = await replay(
        clean_db,
        principal("teacher", teacher, org),
        [play(games[0], 1, "t", NOW)],
        studentId=gid("Student", me),
    )
    assert payload["accepted"] == 1
    context = make_context(Settings(), Executor(clean_db, QueryStats()), principal("teacher", other, org))
    variables = {"input": {"plays": [play(games[0], 1, "u", NOW)], "studentId": gid("Student", me)}}
    result = await execute(
        schema._schema, parse(SUBMIT_SCORES), context_value=context, variable_values=variables
    )  # type: ignore[misc]
    assert result.errors is not None and result.errors[0].extensions["code"] == "FORBIDDEN"


def test_a_batch_is_priced_per_play() -> None:
    analyzer = CostAnalyzer(schema._schema)
    document = parse(
        "mutation($input: SubmitScoresInput!) { submitScores(input: $input) { accepted results { status } } }"
    )

    def price(n: int) -> int:
        plays = [play(1, 1, f"k{i}", NOW) for i in range(n)]
        return analyzer.analyze(document, {"input": {"plays": plays}}, cache_key="same text").requested

    # 10 per play (a mutation's weight) + 1 per result: what n submitScore calls would cost, and more.
    assert [price(1), price(50), price(100), price(1)] == [11, 550, 1100, 11]
    literal = 'mutation { submitScores(input: {plays: [{gameId: "x", score: 1, stage: PRACTICE, idempotencyKey: "a", playedAt: "2026-01-01T00:00:00Z"}, {gameId: "x", score: 1, stage: PRACTICE, idempotencyKey: "b", playedAt: "2026-01-01T00:00:00Z"}]}) { accepted } }'
    assert analyzer.analyze(parse(literal)).requested == 20
