"""Query.changes over real PostgreSQL: scopes, tokens, pages, statement counts, price, concurrent writers."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import pytest
from graphql import parse

from loaders.changes import SELECT_HORIZON
from mlc_graph.domain.sync_tokens import Position, SyncClaims, decode_token, encode_token
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import DEV_JWT_SECRET
from resolvers.schema import schema
from tests.support.factories import make_assignments, make_catalogue, make_org, make_students, make_teacher
from tests.support.graphql_client import gid, principal, run

CHANGES = """
query Sync($since: SyncToken, $first: Int) {
  changes(since: $since, first: $first) {
    hasMore nextToken
    changes {
      entity id operation changedAt studentId
      node {
        __typename
        ... on Assignment { id status }
        ... on Score { id score createdAt }
        ... on BestScore { score achievedAt }
        ... on EarnedBadge { awardedAt badge { name } }
        ... on Student { id lastActiveAt }
        ... on Game { id title status }
      }
    }
  }
}
"""


async def settle(pool: asyncpg.Pool, within: float = 300.0) -> None:
    """Wait until every transaction begun so far has ended, anywhere on the cluster.

    A change is delivered once no older transaction is still running (loaders/changes.py). Writes that
    returned have committed, but on a cluster shared with other test runs (a developer machine) their
    transactions, seeds included, can hold the horizon back for a while.
    """
    now = int(await pool.fetchval("SELECT pg_current_xact_id()::text"))
    deadline = time.monotonic() + within
    while int(await pool.fetchval(SELECT_HORIZON)) <= now:
        assert time.monotonic() < deadline, "a transaction on the cluster stayed open"
        await asyncio.sleep(0.01)


async def sync(
    pool: asyncpg.Pool, viewer: Principal, since: str | None, first: int | None = None, wait: bool = True
) -> tuple[dict[str, Any], int]:
    """One page (after `settle`, unless told not to wait): (the feed, the statements it ran)."""
    if wait:
        await settle(pool)
    variables: dict[str, Any] = {"since": since}
    if first is not None:
        variables["first"] = first
    result, stats = await run(pool, CHANGES, variables, viewer)
    assert result.errors is None, result.errors
    assert result.data is not None
    feed: dict[str, Any] = result.data["changes"]
    return feed, stats.statements


async def sync_all(
    pool: asyncpg.Pool, viewer: Principal, since: str, first: int = 100
) -> tuple[list[dict[str, Any]], str]:
    """Every page until hasMore is false: (all changes, the last token)."""
    collected: list[dict[str, Any]] = []
    while True:
        feed, _ = await sync(pool, viewer, since, first)
        collected += feed["changes"]
        since = feed["nextToken"]
        if not feed["hasMore"]:
            return collected, since


def keys(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(c["entity"], c["id"], c["operation"]) for c in changes]


def error_of(result: Any) -> dict[str, Any]:
    assert result.errors is not None, result.data
    extensions: dict[str, Any] = result.errors[0].extensions
    return extensions


async def _school(pool: asyncpg.Pool) -> dict[str, Any]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    other_teacher = await make_teacher(pool, org, "Otto")
    mine = await make_students(pool, org, teacher, 2)
    theirs = await make_students(pool, org, other_teacher, 1)
    _, _, games = await make_catalogue(pool, games=3)
    other_org = await make_org(pool, "Elsewhere")
    stranger = await make_students(pool, other_org, await make_teacher(pool, other_org), 1)
    return {"org": org, "teacher": teacher, "other_teacher": other_teacher, "mine": mine, "theirs": theirs,
            "games": games, "other_org": other_org, "stranger": stranger}  # fmt: skip


SUBMIT = "mutation($input: SubmitScoreInput!) { submitScore(input: $input) { score { id } } }"


async def submit(pool: asyncpg.Pool, viewer: Principal, game: int, score: int, key: str) -> None:
    variables = {
        "input": {"gameId": gid("Game", game), "score": score, "stage": "CHALLENGE", "idempotencyKey": key}
    }
    result, _ = await run(pool, SUBMIT, variables, viewer)
    assert result.errors is None, result.errors


async def test_a_student_gets_their_own_changes_and_the_catalogue_with_current_nodes(
    clean_db: asyncpg.Pool,
) -> None:
    s = await _school(clean_db)
    me = principal("student", s["mine"][0], s["org"])
    start, statements = await sync(clean_db, me, None)
    assert start["changes"] == [] and start["hasMore"] is False and statements == 1
    await make_assignments(clean_db, s["org"], [s["mine"][0], s["mine"][1]], [s["games"][0]])
    await submit(clean_db, me, s["games"][0], 700, "k1")
    await submit(clean_db, principal("student", s["mine"][1], s["org"]), s["games"][0], 900, "k2")
    await submit(clean_db, principal("student", s["stranger"][0], s["other_org"]), s["games"][0], 990, "k3")
    await clean_db.execute("UPDATE games SET status = 'retired' WHERE id = $1", s["games"][2])
    feed, statements = await sync(clean_db, me, start["nextToken"])
    assert statements == 1 and feed["hasMore"] is False
    assignment = await clean_db.fetchval("SELECT id FROM assignments WHERE student_id = $1", s["mine"][0])
    score = await clean_db.fetchval("SELECT id FROM scores WHERE student_id = $1", s["mine"][0])
    got = keys(feed["changes"])
    assert got[0] == ("ASSIGNMENT", gid("Assignment", assignment), "UPSERT")  # assigned
    # The play's one statement: in the order its triggers fired, all in one transaction.
    assert sorted(got[1:5]) == sorted(
        [
            ("SCORE", gid("Score", score), "UPSERT"),
            ("BEST_SCORE", f"{gid('BestScore', s['mine'][0])}.{s['games'][0]}", "UPSERT"),
            ("ASSIGNMENT", gid("Assignment", assignment), "UPSERT"),  # completed by the play
            ("STUDENT", gid("Student", s["mine"][0]), "UPSERT"),  # lastActiveAt
        ]
    )
    assert got[5:] == [("GAME", gid("Game", s["games"][2]), "TOMBSTONE")]
    by_entity = {c["entity"]: c["node"] for c in feed["changes"][1:5]}
    # Upserts carry the object as it is now: both assignment changes show it completed.
    completed = {"__typename": "Assignment", "id": gid("Assignment", assignment), "status": "COMPLETED"}
    assert feed["changes"][0]["node"] == by_entity["ASSIGNMENT"] == completed
    assert by_entity["SCORE"]["score"] == 700 and by_entity["BEST_SCORE"]["score"] == 700
    assert by_entity["STUDENT"]["lastActiveAt"] == by_entity["SCORE"]["createdAt"]
    assert feed["changes"][5]["node"] is None
    assert {c["studentId"] for c in feed["changes"][:5]} == {gid("Student", s["mine"][0])}
    again, _ = await sync(clean_db, me, feed["nextToken"])
    assert again["changes"] == [] and again["hasMore"] is False


async def test_teachers_get_their_class_and_admins_the_organization_never_another(
    clean_db: asyncpg.Pool,
) -> None:
    s = await _school(clean_db)
    teacher = principal("teacher", s["teacher"], s["org"])
    admin = principal("admin", s["other_teacher"], s["org"])
    tokens = {}
    for name, viewer in (("teacher", teacher), ("admin", admin)):
        tokens[name] = (await sync(clean_db, viewer, None))[0]["nextToken"]
    for student in (s["mine"][0], s["theirs"][0]):
        await submit(clean_db, principal("student", student, s["org"]), s["games"][1], 100, f"t{student}")
    await submit(clean_db, principal("student", s["stranger"][0], s["other_org"]), s["games"][1], 100, "x")
    class_changes, caught_up = await sync_all(clean_db, teacher, tokens["teacher"])
    assert {c["studentId"] for c in class_changes} == {gid("Student", s["mine"][0])}
    org_changes, _ = await sync_all(clean_db, admin, tokens["admin"])
    assert {c["studentId"] for c in org_changes} == {
        gid("Student", s["mine"][0]),
        gid("Student", s["theirs"][0]),
    }
    assert len(org_changes) == 2 * len(class_changes)
    # A student leaving the class: a tombstone for the teacher, an upsert for the new teacher's admin.
    await clean_db.execute(
        "UPDATE students SET teacher_id = $1 WHERE id = $2", s["other_teacher"], s["mine"][1]
    )
    moved, _ = await sync(clean_db, teacher, caught_up)
    assert keys(moved["changes"]) == [("STUDENT", gid("Student", s["mine"][1]), "TOMBSTONE")]


async def test_tokens_are_tamper_evident_bound_to_their_viewer_and_expire(clean_db: asyncpg.Pool) -> None:
    s = await _school(clean_db)
    me = principal("student", s["mine"][0], s["org"])
    token = (await sync(clean_db, me, None))[0]["nextToken"]
    decoded = decode_token(DEV_JWT_SECRET, token)
    assert (decoded.role, decoded.user_id, decoded.org_id) == ("STUDENT", s["mine"][0], s["org"])
    forged = encode_token("another-secret-of-enough-length", decoded)
    moved = encode_token(
        DEV_JWT_SECRET, SyncClaims("STUDENT", s["mine"][0], s["org"], Position(1, 0), decoded.moment)
    )
    assert decode_token(DEV_JWT_SECRET, moved).position == Position(1, 0)  # only the server can mint this one
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (forged, flipped, "not-a-token", ""):
        result, _ = await run(clean_db, CHANGES, {"since": bad}, me)
        assert error_of(result)["code"] == "BAD_USER_INPUT" and error_of(result)["refetch"] is True
    for other in (principal("student", s["mine"][1], s["org"]), principal("teacher", s["teacher"], s["org"]),
                  principal("student", s["mine"][0], s["other_org"])):  # fmt: skip
        result, _ = await run(clean_db, CHANGES, {"since": token}, other)
        assert error_of(result)["code"] == "BAD_USER_INPUT", other
    old = SyncClaims("STUDENT", s["mine"][0], s["org"], decoded.position, int(time.time()) - 31 * 86_400)
    result, _ = await run(clean_db, CHANGES, {"since": encode_token(DEV_JWT_SECRET, old)}, me)
    assert error_of(result) | {} == {
        "code": "SYNC_TOKEN_EXPIRED",
        "argument": "since",
        "refetch": True,
        "retentionDays": 30,
    }
    fresh = SyncClaims("STUDENT", s["mine"][0], s["org"], decoded.position, int(time.time()) - 29 * 86_400)
    ok, _ = await run(clean_db, CHANGES, {"since": encode_token(DEV_JWT_SECRET, fresh)}, me)
    assert ok.errors is None


async def test_pages_are_one_statement_whatever_they_hold_and_resume_exactly(clean_db: asyncpg.Pool) -> None:
    s = await _school(clean_db)
    admin = principal("admin", s["teacher"], s["org"])
    token = (await sync(clean_db, admin, None))[0]["nextToken"]
    baseline = await clean_db.fetchval("SELECT max(seq) FROM sync_changes")
    # Changes of every kind: assignments, scores, best scores, badges, students, games.
    await make_assignments(clean_db, s["org"], s["mine"] + s["theirs"], s["games"])
    badge = await clean_db.fetchval("INSERT INTO badges (name) VALUES ('Star') RETURNING id")
    await clean_db.execute(
        "INSERT INTO student_badges (student_id, badge_id, org_id) SELECT id, $1, org_id FROM students WHERE org_id = $2",
        badge, s["org"],
    )  # fmt: skip
    for i in range(40):
        await submit(
            clean_db, principal("student", s["mine"][i % 2], s["org"]), s["games"][i % 3], i * 10, f"p{i}"
        )
    await clean_db.execute("UPDATE games SET title = title || '!'")
    total = await clean_db.fetchval(
        "SELECT count(*) FROM sync_changes WHERE org_id IN (0, $1) AND seq > $2", s["org"], baseline
    )
    assert total > 100
    seen: list[dict[str, Any]] = []
    counts = []
    while True:
        feed, statements = await sync(clean_db, admin, token, 40)
        counts.append(statements)
        seen += feed["changes"]
        token = feed["nextToken"]
        if not feed["hasMore"]:
            break
    assert len(seen) == total
    assert set(counts) == {1}, counts
    assert {c["entity"] for c in seen} == {
        "ASSIGNMENT",
        "SCORE",
        "BEST_SCORE",
        "EARNED_BADGE",
        "STUDENT",
        "GAME",
    }
    assert all(c["node"] is not None for c in seen)
    # A page of two statements' worth of nested fields costs the same for 1 change or 100.
    nested = "query($since: SyncToken, $first: Int) { changes(since: $since, first: $first) { changes { node { ... on Assignment { game { title } } } } } }"
    start = (await sync(clean_db, admin, None))[0]["nextToken"]
    await make_assignments(clean_db, s["org"], s["mine"], [s["games"][0]])
    await settle(clean_db)
    small, small_stats = await run(clean_db, nested, {"since": start, "first": 100}, admin)
    await make_assignments(clean_db, s["org"], s["mine"] * 40, s["games"])
    await settle(clean_db)
    big, big_stats = await run(clean_db, nested, {"since": start, "first": 100}, admin)
    assert small.data is not None and big.data is not None
    assert len(small.data["changes"]["changes"]) == 2 and len(big.data["changes"]["changes"]) == 100
    assert small_stats.statements == big_stats.statements == 2


async def test_first_is_bounded_and_zero_only_asks_whether_more_is_waiting(clean_db: asyncpg.Pool) -> None:
    s = await _school(clean_db)
    me = principal("student", s["mine"][0], s["org"])
    token = (await sync(clean_db, me, None))[0]["nextToken"]
    result, _ = await run(clean_db, CHANGES, {"since": token, "first": 101}, me)
    assert error_of(result)["code"] == "BAD_USER_INPUT"
    await submit(clean_db, me, s["games"][0], 5, "z")
    probe, _ = await sync(clean_db, me, token, 0)
    assert probe["changes"] == [] and probe["hasMore"] is True
    rest, _ = await sync_all(clean_db, me, probe["nextToken"])
    assert len(rest) == 3  # score, best score, student: nothing lost by asking with first: 0


def test_changes_are_priced_like_a_connection() -> None:
    analyzer = CostAnalyzer(schema._schema)
    query = "{ changes(first: 50) { changes { id node { ... on Assignment { game { title } } } } } }"
    # changes 1 + 50 x (change 1 + node 1 + game 1)
    assert analyzer.analyze(parse(query)).requested == 151
    assert analyzer.analyze(parse("{ changes { changes { id } } }")).requested == 101


async def test_a_later_commit_of_an_earlier_transaction_is_neither_missed_nor_repeated(
    clean_db: asyncpg.Pool,
) -> None:
    s = await _school(clean_db)
    admin = principal("admin", s["teacher"], s["org"])
    token = (await sync(clean_db, admin, None))[0]["nextToken"]
    slow = await clean_db.acquire()
    try:
        # The slow writer takes its transaction id (and its change's seq) first, commits last.
        async with slow.transaction():
            await slow.execute("UPDATE students SET first_name = 'Slow' WHERE id = $1", s["mine"][0])
            await clean_db.execute("UPDATE students SET first_name = 'Fast' WHERE id = $1", s["mine"][1])
            early, _ = await sync(clean_db, admin, token, wait=False)
            # Fast's change is committed but not yet deliverable: a reader that passed it now would
            # never come back for Slow's, which precedes it.
            assert early["changes"] == [] and early["hasMore"] is False
            token = early["nextToken"]
    finally:
        await clean_db.release(slow)
    late, _ = await sync(clean_db, admin, token)
    assert keys(late["changes"]) == [
        ("STUDENT", gid("Student", s["mine"][0]), "UPSERT"),
        ("STUDENT", gid("Student", s["mine"][1]), "UPSERT"),
    ]
    assert (await sync(clean_db, admin, late["nextToken"]))[0]["changes"] == []


async def test_concurrent_writers_and_a_syncing_reader_see_every_change_exactly_once(
    clean_db: asyncpg.Pool,
) -> None:
    s = await _school(clean_db)
    admin = principal("admin", s["teacher"], s["org"])
    token = (await sync(clean_db, admin, None))[0]["nextToken"]
    students = s["mine"] + s["theirs"]
    rng = random.Random(15)
    writes_per_writer, writers = 12, 4

    async def writer(n: int) -> None:
        for i in range(writes_per_writer):
            async with clean_db.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE students SET avatar_url = $1 WHERE id = $2", f"w{n}-{i}", students[n % 3]
                )
                await asyncio.sleep(rng.random() * 0.02)  # commit order differs from xid and seq order
                await conn.execute(
                    "INSERT INTO assignments (org_id, student_id, game_id, due_date) VALUES ($1, $2, $3, '2026-12-24')",
                    s["org"], students[(n + i) % 3], s["games"][i % 3],
                )  # fmt: skip

    delivered: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal token
        while True:
            finished = done.is_set()  # read before syncing: a final pass after every writer committed
            feed, _ = await sync(clean_db, admin, token, 7, wait=finished)
            delivered.extend((c["entity"], c["id"], c["changedAt"]) for c in feed["changes"])
            token = feed["nextToken"]
            if finished and not feed["hasMore"]:
                return
            await asyncio.sleep(0.005)

    baseline = await clean_db.fetchval("SELECT max(seq) FROM sync_changes")
    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    await reading
    logged = await clean_db.fetch(
        "SELECT seq FROM sync_changes WHERE org_id = $1 AND seq > $2", s["org"], baseline
    )
    assert len(delivered) == len(logged) == writers * writes_per_writer * 2
    assignments = [d for d in delivered if d[0] == "ASSIGNMENT"]
    assert len({d[1] for d in assignments}) == len(assignments)  # each new assignment once


@pytest.mark.parametrize("role", ["student", "teacher", "admin"])
async def test_anonymous_and_every_role_can_start(clean_db: asyncpg.Pool, role: str) -> None:
    s = await _school(clean_db)
    viewer = principal(role, s["mine"][0] if role == "student" else s["teacher"], s["org"])
    feed, _ = await sync(clean_db, viewer, None)
    assert decode_token(DEV_JWT_SECRET, feed["nextToken"]).role == role.upper()
    anonymous, _ = await run(clean_db, CHANGES, {"since": None}, None)
    assert error_of(anonymous)["code"] == "UNAUTHENTICATED"


async def test_both_executors_answer_the_same_page(clean_db: asyncpg.Pool) -> None:
    s = await _school(clean_db)
    me = principal("student", s["mine"][0], s["org"])
    token = (await sync(clean_db, me, None))[0]["nextToken"]
    await make_assignments(clean_db, s["org"], [s["mine"][0]], s["games"])
    await submit(clean_db, me, s["games"][0], 300, "both")
    await settle(clean_db)
    answers = []
    for executor in ("compiled", "graphql-core"):
        result, _ = await run(clean_db, CHANGES, {"since": token, "first": 4}, me, executor=executor)
        assert result.errors is None and result.data is not None
        answers.append(result.data["changes"])
    compiled, reference = answers
    assert compiled["changes"] == reference["changes"] and len(compiled["changes"]) == 4
    assert compiled["hasMore"] is reference["hasMore"] is True
    # Mid-backlog a token keeps the moment of the one it continues: both executors mint the same token.
    assert compiled["nextToken"] == reference["nextToken"]
