"""submitScore over real PostgreSQL: idempotency under concurrent retries, best score, rank, completion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from graphql import ExecutionResult, execute, parse

from loaders.score_writes import delete_expired_claims
from mlc_graph import cli
from mlc_graph.keys import EVENTS
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.events import EventBus, ScoreCommitted
from resolvers.context import make_context
from resolvers.schema import schema
from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal, run
from tests.support.http import app_client, bearer, http_settings

SUBMIT = """
mutation Submit($input: SubmitScoreInput!) {
  submitScore(input: $input) {
    clientMutationId
    score { id score stage createdAt game { id } }
    bestScore { score achievedAt }
    rank
  }
}
"""


async def run_with_events(
    pool: asyncpg.Pool, query: str, variables: dict[str, Any], viewer: Principal, events: EventBus
) -> tuple[ExecutionResult, QueryStats]:
    """Like graphql_client.run, with an event bus the test listens on."""
    stats = QueryStats(keep_texts=True)
    context = make_context(Settings(), Executor(pool, stats), viewer, events=events)
    result = execute(schema._schema, parse(query), context_value=context, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        result = await result
    return result, stats


def listening() -> tuple[EventBus, list[ScoreCommitted]]:
    events, seen = EventBus(), []

    async def listen(event: ScoreCommitted) -> None:
        seen.append(event)

    events.on_score(listen)
    return events, seen


async def _class(pool: asyncpg.Pool, size: int = 3) -> tuple[int, int, list[int], list[int]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, size)
    _, _, games = await make_catalogue(pool, games=2)
    return org, teacher, students, games


def submission(
    game: int, score: int, key: str = "k-1", stage: str = "CHALLENGE", **extra: Any
) -> dict[str, Any]:
    return {
        "input": {"gameId": gid("Game", game), "score": score, "stage": stage, "idempotencyKey": key, **extra}
    }


async def count_scores(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM scores")
    return n


async def test_first_submission_records_score_best_and_rank_in_four_statements(
    clean_db: asyncpg.Pool,
) -> None:
    org, teacher, students, games = await _class(clean_db)
    events, seen = listening()
    variables = submission(games[0], 700)
    variables["input"]["clientMutationId"] = "m-1"
    result, stats = await run_with_events(
        clean_db, SUBMIT, variables, principal("student", students[0], org), events
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload = result.data["submitScore"]
    assert payload["clientMutationId"] == "m-1"
    assert payload["score"]["score"] == 700 and payload["score"]["stage"] == "CHALLENGE"
    assert payload["score"]["game"]["id"] == gid("Game", games[0])
    assert payload["bestScore"]["score"] == 700
    assert payload["rank"] == 1
    # target, claim, score+best+assignments, rank+stored result (the payload's game is one more read).
    writes = [t for t in stats.texts if "games WHERE id = ANY" not in t]
    assert len(writes) == 4, stats.texts
    assert await count_scores(clean_db) == 1
    best = await clean_db.fetchrow("SELECT score, org_id, teacher_id FROM best_scores")
    assert best is not None and tuple(best) == (700, org, teacher)
    active = await clean_db.fetchval("SELECT last_active_at FROM students WHERE id = $1", students[0])
    assert active is not None and active.isoformat() == payload["score"]["createdAt"]
    assert len(seen) == 1
    assert (seen[0].student_id, seen[0].score, seen[0].best, seen[0].teacher_id) == (
        students[0],
        700,
        700,
        teacher,
    )


async def test_best_score_only_improves_and_rank_follows_the_global_board(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    other_org = await make_org(clean_db, "Other")
    other_teacher = await make_teacher(clean_db, other_org)
    (rival,) = await make_students(clean_db, other_org, other_teacher, 1)
    await make_score(clean_db, other_org, rival, games[0], 800)
    me = principal("student", students[0], org)
    first, _ = await run(clean_db, SUBMIT, submission(games[0], 600, "a"), me)
    assert first.data is not None
    assert first.data["submitScore"]["rank"] == 2  # the other organization's 800 counts on GLOBAL
    lower, _ = await run(clean_db, SUBMIT, submission(games[0], 500, "b"), me)
    assert lower.data is not None
    assert lower.data["submitScore"]["score"]["score"] == 500
    assert lower.data["submitScore"]["bestScore"]["score"] == 600
    higher, _ = await run(clean_db, SUBMIT, submission(games[0], 900, "c"), me)
    assert higher.data is not None
    assert higher.data["submitScore"]["bestScore"]["score"] == 900
    assert higher.data["submitScore"]["rank"] == 1
    assert await clean_db.fetchval("SELECT score FROM best_scores WHERE student_id = $1", students[0]) == 900


async def test_a_play_on_an_assigned_game_completes_the_assignment_and_the_payload_reads_it(
    clean_db: asyncpg.Pool,
) -> None:
    org, _, students, games = await _class(clean_db)
    await make_assignments(clean_db, org, [students[0]], games)
    query = """mutation($input: SubmitScoreInput!) { submitScore(input: $input) {
        bestScore { score } rank
        student { assignments(status: COMPLETED) { edges { node { status completedAt game { id } } } } }
    } }"""
    result, _ = await run(
        clean_db, query, submission(games[0], 50, stage="PRACTICE"), principal("student", students[0], org)
    )
    assert result.errors is None, result.errors
    assert result.data is not None
    payload = result.data["submitScore"]
    # Practice plays do not compete for the best score, but they do complete the assignment.
    assert payload["bestScore"] is None and payload["rank"] is None
    edges = payload["student"]["assignments"]["edges"]
    assert [e["node"]["game"]["id"] for e in edges] == [gid("Game", games[0])]
    assert edges[0]["node"]["completedAt"] is not None
    statuses = await clean_db.fetch("SELECT game_id, status FROM assignments ORDER BY game_id")
    assert [tuple(r) for r in statuses] == [(games[0], "completed"), (games[1], "active")]
    assert await clean_db.fetchval("SELECT count(*) FROM best_scores") == 0


async def test_a_retry_returns_the_first_result_and_writes_nothing(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    events, seen = listening()
    me = principal("student", students[0], org)
    first, _ = await run_with_events(clean_db, SUBMIT, submission(games[0], 300), me, events)
    await make_score(clean_db, org, students[1], games[0], 999)  # the board moves on meanwhile
    retry, stats = await run_with_events(clean_db, SUBMIT, submission(games[0], 300), me, events)
    assert retry.errors is None, retry.errors
    assert retry.data == first.data
    writes = [t for t in stats.texts if "games WHERE id = ANY" not in t]
    assert len(writes) == 3, stats.texts  # target, claim (conflicts), stored result
    assert await count_scores(clean_db) == 2
    assert len(seen) == 1  # only the first call publishes


async def test_twenty_concurrent_identical_submissions_write_one_row(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    events, seen = listening()
    me = principal("student", students[0], org)
    results = await asyncio.gather(
        *(
            run_with_events(clean_db, SUBMIT, submission(games[0], 420, "same-key"), me, events)
            for _ in range(20)
        )
    )
    assert all(r.errors is None for r, _ in results), [r.errors for r, _ in results if r.errors]
    payloads = [r.data for r, _ in results]
    assert all(p == payloads[0] for p in payloads)
    assert await count_scores(clean_db) == 1
    assert await clean_db.fetchval("SELECT count(*) FROM score_submissions") == 1
    assert len(seen) == 1


AGE_CLAIM = (
    "UPDATE score_submissions SET created_at = now() - make_interval(days => $2) WHERE idempotency_key = $1"
)


async def test_maintain_deletes_claims_past_the_idempotency_window_and_keeps_the_rest(
    clean_db: asyncpg.Pool,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org, _, students, games = await _class(clean_db)
    me = principal("student", students[0], org)
    kept, _ = await run(clean_db, SUBMIT, submission(games[0], 300, "kept"), me)
    await run(clean_db, SUBMIT, submission(games[0], 400, "expired"), me)
    days = Settings().idempotency_days
    assert days == 30  # MLC_SYNC_RETENTION_DAYS; the claims live one day longer (the margin)
    await clean_db.execute(AGE_CLAIM, "kept", days)
    await clean_db.execute(AGE_CLAIM, "expired", days + 2)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("MLC_DIRECT_DATABASE_URL", raising=False)
    assert await asyncio.to_thread(cli.main, ["maintain"]) == 0
    assert "deleted expired score idempotency claims: 1\n" in capsys.readouterr().out
    assert [r["idempotency_key"] for r in await clean_db.fetch("SELECT * FROM score_submissions")] == ["kept"]
    retry, stats = await run(clean_db, SUBMIT, submission(games[0], 300, "kept"), me)
    assert retry.errors is None, retry.errors
    assert retry.data == kept.data  # within the window: the first answer, nothing written
    assert len([t for t in stats.texts if "games WHERE id = ANY" not in t]) == 3, stats.texts
    assert await count_scores(clean_db) == 2
    # Past the window the key is forgotten: the same play again is a new one.
    late, _ = await run(clean_db, SUBMIT, submission(games[0], 400, "expired"), me)
    assert late.errors is None, late.errors
    assert await count_scores(clean_db) == 3


async def test_expired_claims_are_deleted_in_bounded_batches(
    clean_db: asyncpg.Pool, database_url: str
) -> None:
    org, _, students, games = await _class(clean_db)
    me = principal("student", students[0], org)
    for n in range(5):
        await run(clean_db, SUBMIT, submission(games[0], 100 + n, f"k-{n}"), me)
    conn = await asyncpg.connect(database_url)
    statements: list[str] = []
    conn.add_query_logger(lambda logged: statements.append(logged.query))
    try:
        now = datetime.now(UTC)
        assert await delete_expired_claims(conn, 30, now=now, batch_size=2) == 0
        later = now + timedelta(days=32)
        assert await delete_expired_claims(conn, 30, now=later, batch_size=2) == 5
    finally:
        await conn.close()
    # One statement that found nothing, then 2 + 2 + 1 rows, each DELETE committing on its own.
    assert len(statements) == 4, statements
    assert await clean_db.fetchval("SELECT count(*) FROM score_submissions") == 0
    assert await count_scores(clean_db) == 5  # the scores themselves stay


async def test_a_reused_key_with_a_different_score_is_a_conflict(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    me = principal("student", students[0], org)
    await run(clean_db, SUBMIT, submission(games[0], 300), me)
    result, _ = await run(clean_db, SUBMIT, submission(games[0], 301), me)
    assert result.errors is not None
    assert result.errors[0].extensions is not None
    assert result.errors[0].extensions["code"] == "CONFLICT"
    assert await count_scores(clean_db) == 1


async def test_scores_outside_the_game_range_are_refused_with_the_range(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    result, _ = await run(
        clean_db, SUBMIT, submission(games[0], 1001), principal("student", students[0], org)
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {
        "code": "BAD_USER_INPUT",
        "argument": "score",
        "minScore": 0,
        "maxScore": 1000,
    }
    assert await count_scores(clean_db) == 0
    assert await clean_db.fetchval("SELECT count(*) FROM score_submissions") == 0


async def test_teachers_submit_for_their_own_class(clean_db: asyncpg.Pool) -> None:
    org, teacher, students, games = await _class(clean_db)
    other_teacher = await make_teacher(clean_db, org, "Other")
    on_behalf = submission(games[0], 10, studentId=gid("Student", students[1]))
    ok, _ = await run(clean_db, SUBMIT, on_behalf, principal("teacher", teacher, org))
    assert ok.errors is None, ok.errors
    admin, _ = await run(
        clean_db,
        SUBMIT,
        submission(games[0], 11, "k-2", studentId=gid("Student", students[1])),
        principal("admin", other_teacher, org),
    )
    assert admin.errors is None, admin.errors
    refused, _ = await run(
        clean_db,
        SUBMIT,
        submission(games[0], 12, "k-3", studentId=gid("Student", students[1])),
        principal("teacher", other_teacher, org),
    )
    assert refused.errors is not None and refused.errors[0].extensions is not None
    assert refused.errors[0].extensions["code"] == "FORBIDDEN"
    assert await count_scores(clean_db) == 2


@pytest.mark.parametrize(
    ("who", "extra", "code"),
    [
        ("anonymous", {}, "UNAUTHENTICATED"),
        ("student-other", {"studentId": "other"}, "FORBIDDEN"),
        ("teacher", {}, "BAD_USER_INPUT"),
        ("teacher", {"studentId": "foreign"}, "NOT_FOUND"),
        ("student", {"gameId": "missing"}, "NOT_FOUND"),
        ("student", {"idempotencyKey": ""}, "BAD_USER_INPUT"),
    ],
)
async def test_refusals_carry_codes_and_write_nothing(
    clean_db: asyncpg.Pool, who: str, extra: dict[str, Any], code: str
) -> None:
    org, teacher, students, games = await _class(clean_db)
    other_org = await make_org(clean_db, "Other")
    (foreign,) = await make_students(clean_db, other_org, await make_teacher(clean_db, other_org), 1)
    ids = {
        "other": gid("Student", students[1]),
        "foreign": gid("Student", foreign),
        "missing": gid("Game", 999),
    }
    variables = submission(games[0], 5, **{k: ids.get(v, v) for k, v in extra.items()})
    viewer = {
        "anonymous": None,
        "student-other": principal("student", students[0], org),
        "student": principal("student", students[0], org),
        "teacher": principal("teacher", teacher, org),
    }[who]
    result, _ = await run(clean_db, SUBMIT, variables, viewer)
    assert result.errors is not None and result.errors[0].extensions is not None
    assert result.errors[0].extensions["code"] == code
    assert await count_scores(clean_db) == 0


async def test_each_mutation_reads_its_own_writes_past_the_request_caches(clean_db: asyncpg.Pool) -> None:
    org, _, students, games = await _class(clean_db)
    query = """mutation($a: SubmitScoreInput!, $b: SubmitScoreInput!, $g: ID!) {
        first: submitScore(input: $a) { student { bestScore(gameId: $g) { score } } }
        second: submitScore(input: $b) { student { bestScore(gameId: $g) { score } } }
    }"""
    variables = {
        "a": submission(games[0], 300, "one")["input"],
        "b": submission(games[0], 500, "two")["input"],
        "g": gid("Game", games[0]),
    }
    result, _ = await run(clean_db, query, variables, principal("student", students[0], org))
    assert result.errors is None, result.errors
    # The first field cached the student's best score; the second mutation cleared it and reads 500.
    assert result.data == {
        "first": {"student": {"bestScore": {"score": 300}}},
        "second": {"student": {"bestScore": {"score": 500}}},
    }


async def test_submit_score_over_http_publishes_on_the_apps_event_bus(
    clean_db: asyncpg.Pool, database_url: str
) -> None:
    org, _, students, games = await _class(clean_db)
    seen: list[ScoreCommitted] = []

    async def listen(event: ScoreCommitted) -> None:
        seen.append(event)

    body = {"query": SUBMIT, "variables": submission(games[0], 640, "http-key")}
    async with app_client(http_settings(database_url)) as client:
        assert client.app is not None
        client.app[EVENTS].on_score(listen)
        for _ in range(2):  # a retry over HTTP returns the same payload and publishes nothing
            response = await client.post("/graphql", json=body, headers=bearer("student", students[0], org))
            assert response.status == 200
            payload = await response.json()
            assert "errors" not in payload, payload
            assert payload["data"]["submitScore"]["bestScore"] == {
                "score": 640,
                "achievedAt": payload["data"]["submitScore"]["score"]["createdAt"],
            }
    assert [(e.student_id, e.score, e.best) for e in seen] == [(students[0], 640, 640)]
