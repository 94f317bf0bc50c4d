"""The bench harness: the floor's W1-W4 answers on factory data, and the load generator's arithmetic."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from bench import procstats
from bench.baselines import DIALECTS, row_ids
from bench.floor import STATEMENTS_HEADER, create_app
from bench.load import (
    LoadResult,
    Target,
    compare_answers,
    first_difference,
    percentile,
    run_load,
    sql_statements_in_body,
)
from bench.run import Measured, Processes, workload_result, write_json, write_markdown
from bench.workloads import BY_KEY, WORKLOADS, Dataset, Request, build_dataset, dashboard_workload
from bench.wrk import WrkResult, parse_result, prepare_sequence, run_wrk, write_requests
from mlc_graph.platform.auth import Principal, Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET, PoolSettings
from resolvers.leaderboards import pseudonym
from resolvers.relay import encode_global_id
from tests.support.database import TENANT_TABLES
from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import principal, run
from tests.support.http import app_client, http_settings

# The schema run in-process uses default Settings, whose secret also keys leaderboard pseudonyms.
SECRET = DEV_JWT_SECRET


@dataclass(frozen=True)
class World:
    org_a: int
    org_b: int
    teacher_a: int
    teacher_b: int
    students_a: list[int]
    student_b: int
    category: int
    games: list[int]
    draft_game: int


@pytest.fixture(scope="module")
async def world(pool: asyncpg.Pool) -> World:
    """Built once for the module: every test here only reads it (the next module's clean_db empties it)."""
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org_a, org_b = await make_org(pool, "A"), await make_org(pool, "B")
    teacher_a, teacher_b = await make_teacher(pool, org_a), await make_teacher(pool, org_b)
    students_a = await make_students(pool, org_a, teacher_a, 3)
    (student_b,) = await make_students(pool, org_b, teacher_b, 1)
    category, _, games = await make_catalogue(pool, games=60)
    _, _, (draft_game,) = await make_catalogue(pool, games=1, status="draft")
    await make_assignments(pool, org_a, students_a, [games[0], games[1], draft_game])
    await make_assignments(pool, org_a, students_a[:1], [games[2]], status="completed")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    await make_score(pool, org_a, students_a[0], games[0], 700, at=at)
    await make_score(pool, org_a, students_a[1], games[0], 900, at=at)
    await make_score(pool, org_b, student_b, games[0], 800, at=at + timedelta(minutes=1))
    return World(org_a, org_b, teacher_a, teacher_b, students_a, student_b, category, games, draft_game)


@pytest.fixture(scope="module")
async def floor(database_url: str) -> AsyncIterator[TestServer]:
    app = create_app(database_url, SECRET, PoolSettings(min_size=1, max_size=4))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def ask(
    server: TestServer, path: str, variables: dict[str, Any], token: str | None
) -> tuple[int, Any, str | None]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        ClientSession() as session,
        session.post(server.make_url(path), data=orjson.dumps(variables), headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read()), response.headers.get(STATEMENTS_HEADER)


def token(role: Role, user_id: int, org_id: int) -> str:
    return issue_token(SECRET, role, user_id, org_id)


async def test_dashboard_answers_the_teachers_class_in_four_statements(
    floor: TestServer, world: World
) -> None:
    status, answer, statements = await ask(
        floor,
        "/w1",
        {"id": encode_global_id("Teacher", world.teacher_a)},
        token(Role.TEACHER, world.teacher_a, world.org_a),
    )
    assert status == 200
    assert statements == "4"  # teacher, students (the class fits: no count), assignments, games
    teacher = answer["data"]["teacher"]
    assert teacher["id"] == encode_global_id("Teacher", world.teacher_a)
    assert teacher["students"]["totalCount"] == 3
    nodes = [edge["node"] for edge in teacher["students"]["edges"]]
    assert [n["id"] for n in nodes] == [encode_global_id("Student", s) for s in world.students_a]
    assert list(nodes[0]) == ["id", "firstName", "lastName", "avatarUrl", "assignments"]
    first_assignments = [edge["node"] for edge in nodes[0]["assignments"]["edges"]]
    # Only ACTIVE ones, soonest due first; an assigned draft game stays visible to the class.
    assert [a["status"] for a in first_assignments] == ["ACTIVE", "ACTIVE", "ACTIVE"]
    assert first_assignments[0]["dueDate"] == "2026-12-01"
    games = [a["game"] for a in first_assignments]
    assert games[0] == {
        "id": encode_global_id("Game", world.games[0]),
        "title": "Game 1",
        "difficulty": "BEGINNER",
        "thumbnailUrl": None,
        "category": {
            "id": encode_global_id("Category", world.category),
            "name": games[0]["category"]["name"],
        },
    }
    assert games[2] is not None and games[2]["id"] == encode_global_id("Game", world.draft_game)


async def test_dashboard_page_size_and_other_organizations(floor: TestServer, world: World) -> None:
    own = token(Role.TEACHER, world.teacher_a, world.org_a)
    teacher_id = encode_global_id("Teacher", world.teacher_a)
    _, answer, _ = await ask(floor, "/w1", {"id": teacher_id, "studentsFirst": 2}, own)
    assert len(answer["data"]["teacher"]["students"]["edges"]) == 2
    assert answer["data"]["teacher"]["students"]["totalCount"] == 3

    _, answer, statements = await ask(
        floor, "/w1", {"id": teacher_id}, token(Role.TEACHER, world.teacher_b, world.org_b)
    )
    assert answer == {"data": {"teacher": None}}
    assert statements == "1"


async def test_leaderboard_hides_students_the_viewer_may_not_see(floor: TestServer, world: World) -> None:
    viewer = world.students_a[0]
    status, answer, statements = await ask(
        floor,
        "/w2",
        {"gameId": encode_global_id("Game", world.games[0])},
        token(Role.STUDENT, viewer, world.org_a),
    )
    assert status == 200
    assert statements == "2"  # the game, the top 50; the viewer is among them, so no rank lookup
    board = answer["data"]["leaderboard"]
    assert [(e["rank"], e["score"]) for e in board["entries"]] == [(1, 900), (2, 800), (3, 700)]
    assert board["entries"][2]["student"] == {
        "id": encode_global_id("Student", viewer),
        "firstName": "First1",
    }
    # A classmate: visible name, but a student sees only themselves; another organization: a pseudonym.
    assert board["entries"][0]["student"] is None
    assert board["entries"][0]["displayName"] == "First2 L."
    assert board["entries"][1]["student"] is None
    assert board["entries"][1]["displayName"] == pseudonym(SECRET, world.student_b)
    assert board["entries"][0]["achievedAt"] == "2026-03-01T00:00:00+00:00"
    assert board["viewerEntry"] == {"rank": 3, "score": 700}

    _, answer, statements = await ask(
        floor,
        "/w2",
        {"gameId": encode_global_id("Game", world.games[0])},
        token(Role.TEACHER, world.teacher_a, world.org_a),
    )
    assert answer["data"]["leaderboard"]["viewerEntry"] is None
    assert answer["data"]["leaderboard"]["entries"][0]["student"]["firstName"] == "First2"
    assert statements == "2"

    # A student without a challenge score: the rank lookup runs and finds nothing.
    without = world.students_a[2]
    _, answer, statements = await ask(
        floor,
        "/w2",
        {"gameId": encode_global_id("Game", world.games[0])},
        token(Role.STUDENT, without, world.org_a),
    )
    assert answer["data"]["leaderboard"]["viewerEntry"] is None
    assert statements == "3"
    _, answer, _ = await ask(
        floor,
        "/w2",
        {"gameId": encode_global_id("Game", world.draft_game)},
        token(Role.STUDENT, without, world.org_a),
    )
    assert answer == {"data": {"leaderboard": None}}


async def test_library_pages_newest_first_and_follows_its_cursor(floor: TestServer, world: World) -> None:
    viewer = token(Role.TEACHER, world.teacher_a, world.org_a)
    category_id = encode_global_id("Category", world.category)
    _, answer, statements = await ask(floor, "/w3", {"categoryId": category_id, "after": None}, viewer)
    assert statements == "1"  # the page, each game with its category and level
    games = answer["data"]["games"]
    assert len(games["edges"]) == 50
    assert games["pageInfo"]["hasNextPage"] is True
    assert games["pageInfo"]["endCursor"] == games["edges"][-1]["cursor"]
    first = games["edges"][0]["node"]
    assert first["id"] == encode_global_id("Game", world.games[-1])
    assert first["createdAt"] == "2026-01-01T01:00:00+00:00"
    assert list(first) == ["id", "title", "difficulty", "thumbnailUrl", "createdAt", "category", "level"]
    assert first["level"]["name"].startswith("Level ")

    _, answer, _ = await ask(
        floor, "/w3", {"categoryId": category_id, "after": games["pageInfo"]["endCursor"]}, viewer
    )
    rest = answer["data"]["games"]
    assert [e["node"]["id"] for e in rest["edges"]] == [
        encode_global_id("Game", g) for g in reversed(world.games[:10])
    ]
    assert rest["pageInfo"]["hasNextPage"] is False


async def test_student_by_id_within_the_organization_only(floor: TestServer, world: World) -> None:
    student_id = encode_global_id("Student", world.students_a[1])
    _, answer, statements = await ask(
        floor, "/w4", {"id": student_id}, token(Role.ADMIN, world.teacher_a, world.org_a)
    )
    assert statements == "1"
    assert answer["data"]["student"] == {
        "id": student_id,
        "firstName": "First2",
        "lastName": "Last0002",
        "username": answer["data"]["student"]["username"],
        "avatarUrl": None,
        "status": "ACTIVE",
    }
    _, answer, _ = await ask(
        floor, "/w4", {"id": student_id}, token(Role.ADMIN, world.teacher_b, world.org_b)
    )
    assert answer == {"data": {"student": None}}
    _, answer, _ = await ask(
        floor,
        "/w4",
        {"id": encode_global_id("Teacher", world.teacher_a)},
        token(Role.ADMIN, world.teacher_a, world.org_a),
    )
    assert answer == {"data": {"student": None}}


async def test_floor_refuses_missing_and_bad_tokens(floor: TestServer, world: World) -> None:
    status, answer, _ = await ask(floor, "/w4", {"id": "x"}, None)
    assert status == 401
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    status, _, _ = await ask(
        floor, "/w4", {"id": "x"}, issue_token("another-secret-of-enough-length!!", Role.ADMIN, 1, 1)
    )
    assert status == 401


def _dataset(world: World) -> Dataset:
    return build_dataset(
        teachers=[(world.teacher_a, world.org_a), (world.teacher_b, world.org_b)],
        students=[(s, world.org_a) for s in world.students_a] + [(world.student_b, world.org_b)],
        leaderboard_games=[world.games[0]],
        categories=[world.category],
        secret=SECRET,
    )


async def test_load_generator_is_bounded_by_count_and_reads_statement_counts(
    floor: TestServer, world: World
) -> None:
    target = Target("floor", str(floor.make_url("")).rstrip("/"))
    dataset = _dataset(world)
    result = await run_load(target, BY_KEY["W4"], dataset, clients=2, duration=60, max_requests=12)
    assert (result.requests, result.errors, result.first_error) == (12, 0, None)
    assert len(result.latencies) == 12
    assert result.statements_per_request == 1

    # W3 follows its cursor: a visit reads page 1 (50 games) then page 2 (the last 10) and starts over.
    result = await run_load(target, BY_KEY["W3"], dataset, clients=1, duration=60, max_requests=4)
    assert (result.requests, result.errors) == (4, 0)
    assert result.statements_per_request == 1

    result = await run_load(target, dashboard_workload(10), dataset, clients=1, duration=60, max_requests=3)
    assert (result.requests, result.errors) == (3, 0)
    # W1 tokens and ids come from one organization each, so every answer is non-null (errors otherwise).
    result = await run_load(target, BY_KEY["W1"], dataset, clients=3, duration=60, max_requests=9)
    assert (result.requests, result.errors) == (9, 0)


async def test_load_generator_counts_errors(floor: TestServer, world: World) -> None:
    dataset = _dataset(world)
    broken = replace(dataset, admin_tokens=dict.fromkeys(dataset.admin_tokens, "not-a-token"))
    target = Target("floor", str(floor.make_url("")).rstrip("/"))
    result = await run_load(target, BY_KEY["W4"], broken, clients=1, duration=60, max_requests=3)
    assert (result.requests, result.errors) == (3, 3)
    assert result.first_error is not None and result.first_error.startswith("HTTP 401")
    assert result.latencies == []


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 95) == 0.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0


def test_result_summary_reports_milliseconds_of_unsorted_latencies() -> None:
    result = LoadResult("graphql", "W4", clients=1, requests=11, errors=1, elapsed=2.0)
    result.latencies = [(v % 10 + 1) / 1000 for v in range(10)][::-1]  # 1..10 ms, in reverse
    result.statements, result.statement_samples = 30, 10
    summary = result.summary()
    assert summary["rps"] == 5.0
    assert (summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]) == (5.0, 10.0, 10.0)
    assert summary["statements_per_request"] == 3.0


def test_statement_count_is_read_from_the_graphql_extensions() -> None:
    assert sql_statements_in_body(b'{"data":{},"extensions":{"sqlStatements":12}}') == 12
    assert sql_statements_in_body(b'{"data":{},"extensions":{"sqlStatements": 3,"x":1}}') == 3
    assert sql_statements_in_body(b'{"data":{"x":"sqlStatements"}}') is None


def test_load_targets_only_this_machine() -> None:
    with pytest.raises(ValueError, match="only targets this machine"):
        Target("graphql", "http://example.com:8000")


async def _both(
    floor: TestServer, pool: asyncpg.Pool, workload: str, variables: dict[str, Any], viewer: Principal
) -> tuple[Any, Any]:
    """The same request answered by the floor and by the GraphQL schema (same data, same viewer)."""
    w = BY_KEY[workload]
    minted = issue_token(SECRET, viewer.role, viewer.user_id, viewer.org_id)
    _, from_floor, _ = await ask(floor, w.floor_path, w.floor_body(Request(variables, minted)), minted)
    result, _ = await run(pool, w.document, variables, viewer)
    assert result.errors is None
    return from_floor["data"], orjson.loads(orjson.dumps(result.data))


async def test_floor_answers_equal_the_graphql_answers(
    floor: TestServer, world: World, pool: asyncpg.Pool
) -> None:
    teacher = principal("teacher", world.teacher_a, world.org_a)
    from_floor, from_graphql = await _both(
        floor, pool, "W1", {"id": encode_global_id("Teacher", world.teacher_a)}, teacher
    )
    assert from_floor == from_graphql

    for viewer in (world.students_a[0], world.students_a[2]):
        from_floor, from_graphql = await _both(
            floor, pool, "W2", {"gameId": encode_global_id("Game", world.games[0])},
            principal("student", viewer, world.org_a),
        )  # fmt: skip
        assert from_floor == from_graphql

    category_id = encode_global_id("Category", world.category)
    from_floor, from_graphql = await _both(
        floor, pool, "W3", {"categoryId": category_id, "after": None}, teacher
    )
    assert from_floor == from_graphql
    after = from_floor["games"]["pageInfo"]["endCursor"]
    from_floor, from_graphql = await _both(
        floor, pool, "W3", {"categoryId": category_id, "after": after}, teacher
    )
    assert from_floor == from_graphql

    admin = principal("admin", world.teacher_a, world.org_a)
    from_floor, from_graphql = await _both(
        floor, pool, "W4", {"id": encode_global_id("Student", world.students_a[1])}, admin
    )
    assert from_floor == from_graphql


def _measured(target: str, rps: float, p95_ms: float, cpu_ms: float) -> Measured:
    """A 2-second wrk run of `rps` answers/s that cost the server `cpu_ms` each."""
    load = WrkResult(
        target, "W4", clients=32, requests=int(rps * 2), errors=0, elapsed=2.0, p50_ms=p95_ms / 2,
        p95_ms=p95_ms, p99_ms=p95_ms * 2, mean_ms=p95_ms / 2, response_bytes=200, client_cpu=0.02,
        statements_per_request=1.0, first_error=None,
    )  # fmt: skip
    return Measured(load, server_cpu=int(rps * 2) * cpu_ms / 1000, postgres_cpu=0.5)


def _fake_run(mode: str) -> dict[str, Any]:
    workload = BY_KEY["W4"]
    rounds = {
        "graphql": [_measured("graphql", r, 3.0, 0.5) for r in (400, 500, 450)],
        "graphql-noredis": [_measured("graphql-noredis", 600, 2.0, 0.4)],
        "postgraphile5": [_measured("postgraphile5", r, 4.0, 1.0) for r in (900, 850, 950)],
        "postgraphile4": [_measured("postgraphile4", 300, 4.0, 1.5)],
        "floor": [_measured("floor", 900, 1.0, 0.25)],
    }
    single = {name: _measured(name, 100, p95, 1.0) for name, p95 in
              (("graphql", 9.0), ("graphql-noredis", 8.0), ("postgraphile5", 4.5), ("postgraphile4", 6.0),
               ("floor", 3.0))}  # fmt: skip
    line = workload_result(workload, rounds, single, {"rps": 700.0})
    return {
        "mode": mode,
        "date": "2026-11-27T08:00:00+00:00",
        "seconds": 60,
        "machine": {"nproc": 2, "cpu_model": "cpu", "memory_gb": 24.0, "kernel": "6", "python": "3.11",
                    "postgresql": "15.2", "load_average_before": [0.5, 0.4, 0.3],
                    "load_average_after": [0.7, 0.4, 0.3]},
        "database": "mlc_bench",
        "seed": {"seeded_now": False},
        "plan": {"clients": 32, "rounds": 3, "seconds_per_round": 10, "single_client_seconds": 5,
                 "warmup_seconds": 3, "server_env": [], "redis": True, "generator": "wrk",
                 "servers": list(rounds), "requests_per_sequence": 300},
        "git": "abc1234",
        "workloads": {"W4": line},
        "page_size": {},
        "rss": {"graphql_idle_mb": 80.0, "graphql_after_load_mb": 90.0, "floor_after_load_mb": 40.0},
        "cost_analysis": {"W4": {"requested_cost": 1, "uncached_ms": 0.1, "cached_median_us": 2.0}},
    }  # fmt: skip


def test_results_take_medians_of_rounds_and_the_ratios_to_each_baseline() -> None:
    line = _fake_run("full")["workloads"]["W4"]
    mlc, pg5 = line["servers"]["graphql"], line["servers"]["postgraphile5"]
    assert (mlc["rps"], pg5["rps"]) == (450.0, 900.0)
    assert (mlc["p95_ms"], mlc["single_client_p95_ms"]) == (3.0, 9.0)
    assert mlc["server_cpu_ms_per_request"] == 0.5
    assert mlc["statements_per_request"] == 1.0
    # Throughput MLC / other; CPU and 1-client p95 other / MLC: above 1 means MLC Graph is ahead.
    assert line["ratios"]["postgraphile5"] == {"rps": 0.5, "cpu": 2.0, "single_client_p95": 0.5}
    assert line["ratios"]["postgraphile4"]["rps"] == 1.5
    assert line["ratios"]["floor"]["cpu"] == 0.5
    assert line["redis_cpu_ms_per_request"] == pytest.approx(0.1)
    assert line["workers2"] == {"rps": 700.0}


def test_results_files_keep_notes_and_the_other_mode(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nProfile notes written by hand.\n")
    write_markdown(results, _fake_run("full"))
    write_markdown(results, _fake_run("quick"))
    write_markdown(results, _fake_run("full"))
    text = results.read_text()
    assert "Profile notes written by hand." in text
    assert text.count("<!-- bench:full:begin -->") == 1
    assert text.count("<!-- bench:quick:begin -->") == 1
    assert "| W4 one student by id | 450.0 | 600.0 | 900.0 | 300.0 | 900.0 |" in text
    assert "| W4 | x0.50, x2.00, x0.50 | x1.50, x3.00, x0.67 | x0.50, x0.50, x0.33 | 700.0 | 0.100 |" in text
    assert "load average 0.5 at the start, 0.7 at the end" in text
    assert "cached 2.0 us" in text

    data = tmp_path / "results.json"
    write_json(data, _fake_run("full"))
    write_json(data, _fake_run("quick"))
    saved = orjson.loads(data.read_bytes())
    assert set(saved) == {"full", "quick"}
    assert saved["full"]["workloads"]["W4"]["ratios"]["postgraphile5"]["rps"] == 0.5


async def test_procstats_reads_processes_and_the_bench_databases_backends(
    pool: asyncpg.Pool, database_name: str
) -> None:
    me = os.getpid()
    assert me in procstats.process_tree(me)
    assert procstats.rss_bytes(me) > 0
    assert procstats.cpu_seconds([me]) > 0
    await pool.fetchval("SELECT 1")
    assert procstats.postgres_backends_cpu(database_name)  # the test pool's connections
    assert procstats.postgres_backends_cpu("no_such_database_here") == {}
    # A backend that ended between snapshots is ignored, a new one counts from zero.
    assert procstats.cpu_delta({1: 5.0, 3: 9.0}, {1: 7.0, 2: 1.0}) == 3.0


def test_runner_stops_what_it_started_with_its_children(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    # A parent with a child of its own, like `serve --workers 2`: both must go.
    proc = procs.start("sleeper", ["sh", "-c", "sleep 60 & sleep 60; wait"], dict(os.environ))
    tree: list[int] = []
    for _ in range(200):
        tree = procstats.process_tree(proc.pid)
        if len(tree) >= 3:
            break
        time.sleep(0.01)
    assert len(tree) >= 3
    procs.stop_all()
    assert proc.poll() is not None
    for _ in range(200):  # the group got SIGTERM; give the children a moment to be reaped
        if not any(procstats.rss_bytes(pid) for pid in tree):
            break
        time.sleep(0.01)
    assert not any(procstats.rss_bytes(pid) for pid in tree)
    assert procs.running == {}


def test_first_difference_names_the_path() -> None:
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) is None
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "data.a[1].b: '2' != '3'"
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "data.a: 1 items != 2"
    assert first_difference({"a": 1, "b": 2}, {"b": 2, "a": 1}) == "data: keys ['a', 'b'] != ['b', 'a']"


async def test_the_runners_parity_check_passes_against_the_real_server(
    floor: TestServer, world: World, database_url: str
) -> None:
    """What bench.run checks before loading: the HTTP server and the floor give the same data."""
    dataset = _dataset(world)
    async with app_client(http_settings(database_url, jwt_secret=SECRET)) as client:
        graphql = Target("graphql", str(client.make_url("")).rstrip("/"))
        target = Target("floor", str(floor.make_url("")).rstrip("/"))
        for workload in WORKLOADS:
            assert await compare_answers(graphql, target, workload, dataset, samples=3) is None, workload.key


def test_wrk_requests_file_quotes_any_body_as_a_lua_long_string(tmp_path: Path) -> None:
    path = tmp_path / "requests.lua"
    tricky = b'{"query":"]] ]=] ]==]","variables":{}}'
    write_requests(path, [("/graphql", "tok]]en", tricky), ("/w4", "t", b"{}")])
    text = path.read_text()
    assert text.startswith("return {\n")
    # Each string's closing bracket has more '=' than any run inside it, so none ends early.
    assert '{[[/graphql]], [=[tok]]en]=], [===[{"query":"]] ]=] ]==]","variables":{}}]===]},' in text
    assert "{[[/w4]], [[t]], [[{}]]}," in text


def test_wrk_result_line_is_read_from_its_output() -> None:
    out = 'Running 1s test\nMLC_WRK_RESULT {"requests":10,"p95_us":1500}\n'
    assert parse_result(out) == {"requests": 10, "p95_us": 1500}
    with pytest.raises(RuntimeError, match="no result line"):
        parse_result("Running 1s test\n")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench-setup installs it)")
async def test_wrk_cycles_a_prepared_sequence_and_counts_wrong_answers(
    floor: TestServer, world: World, tmp_path: Path
) -> None:
    """The wrk path of `make bench`: a sequence prepared from real answers (W3 follows its cursor), then
    wrk driving it; a sequence of refused requests shows up as errors, not as throughput."""
    target = Target("floor", str(floor.make_url("")).rstrip("/"))
    dataset = _dataset(world)
    library = await prepare_sequence(target, BY_KEY["W3"], dataset, tmp_path, count=6)
    assert (library.requests, library.statements_per_request, library.problem) == (6, 1.0, None)
    # Page 1 then page 2 through the cursor the floor answered, then a new visit: 1, 2, 1, 2, ...
    bodies = [line for line in library.path.read_text().splitlines() if line.startswith("{")]
    assert ['"after":null' in b for b in bodies] == [True, False, True, False, True, False]

    result = await run_wrk(target, library, clients=2, duration=1)
    assert result.requests > 0 and result.errors == 0 and result.first_error is None
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.client_cpu > 0

    broken = replace(dataset, admin_tokens=dict.fromkeys(dataset.admin_tokens, "not-a-token"))
    refused = await prepare_sequence(target, BY_KEY["W4"], broken, tmp_path, count=3)
    assert refused.problem is not None and refused.problem.startswith("HTTP 401")
    result = await run_wrk(target, refused, clients=1, duration=1)
    assert result.requests > 0 and result.errors == result.requests and result.rps == 0
    assert result.first_error is not None and result.first_error.startswith("HTTP 401")


def test_postgraphile_documents_ask_each_version_in_its_own_naming() -> None:
    v4, v5 = DIALECTS["postgraphile4"].documents(), DIALECTS["postgraphile5"].documents()
    assert set(v4) == set(v5) == {w.key for w in WORKLOADS}
    assert "teacher: teacherById(id: $id)" in v4["W1"] and "teacher: teacherByRowId(rowId: $id)" in v5["W1"]
    assert "id: rowId" in v5["W4"] and "rowId" not in v4["W4"]
    # Row ids from MLC Graph's global ids; cursors pass through untouched.
    variables = {"categoryId": encode_global_id("Category", 12), "after": "opaque"}
    assert row_ids(variables) == {"categoryId": "12", "after": "opaque"}


def test_server_profile_reads_py_spy_stacks_and_gc_pauses(tmp_path: Path) -> None:
    from bench.server_profile import gc_pauses, top_self_samples

    raw = tmp_path / "spy.txt"
    raw.write_text("main;serve;send (a.py:1) 30\nmain;serve;parse (b.py:2) 10\nmain;send (a.py:1) 10\n")
    assert top_self_samples(raw) == [(80.0, "send (a.py:1)"), (20.0, "parse (b.py:2)")]
    log = "x\nmlc-gc-pause gen0 7.5 collected=0\nmlc-gc-pause gen0 36.1 collected=5\nmlc-gc-pause gen2 3.0 collected=1\n"
    assert gc_pauses(log) == {"gen0": (2, 36.1), "gen2": (1, 3.0)}


async def test_statements_are_counted_on_the_warm_pass_the_load_repeats(world: World, tmp_path: Path) -> None:
    """A first answer may pay for a cache (a Redis board built, a plan compiled); the load cycles the same
    requests, so the figure is the second pass's. The server here says 3 statements the first time it
    sees a body and 1 after, and only answers W4's shape."""
    seen: set[bytes] = set()

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        statements = 1 if body in seen else 3
        seen.add(body)
        payload = {"data": {"student": {"id": "x"}}}
        return web.json_response(payload, headers={STATEMENTS_HEADER: str(statements)})

    app = web.Application()
    app.router.add_post("/w4", answer)
    async with TestServer(app) as server:
        target = Target("floor", str(server.make_url("")).rstrip("/"))
        sequence = await prepare_sequence(target, BY_KEY["W4"], _dataset(world), tmp_path, count=4)
    assert (sequence.statements_per_request, sequence.problem) == (1.0, None)
    assert len(seen) == 4
