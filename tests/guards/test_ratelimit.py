"""Requests and cost points per user per hour, on the real Redis and in process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from mlc_graph.cli import main as cli_main
from mlc_graph.domain.tiers import DEFAULT_TIERS, TierTable, markdown_table
from mlc_graph.guards.ratelimit import RateLimiter, identity_for
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET, ConfigError, Settings
from mlc_graph.platform.redis import RedisState, fallback_count
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.http import http_settings
from tests.support.redis_server import RedisServer

# Fixtures shared by the real-time tests (a module attribute is how pytest finds them).
redis_prefix = redis_support.redis_prefix
redis_state = redis_support.redis_state
redis_server = redis_support.redis_server

PRELUDE = DEFAULT_TIERS["PRELUDE"]


def test_tier_table_is_the_product_spec() -> None:
    table = TierTable.from_overrides("")
    assert [(t.name, t.students, t.requests_per_hour, t.sessions) for t in table.rows()] == [
        ("PRELUDE", 19, 500, 5),
        ("SOLO", 19, 1000, 10),
        ("ENSEMBLE", None, 3000, 100),
    ]
    assert table.for_tier("ENSEMBLE").student_cap(seat_count=250) == 250
    assert table.for_tier("nonsense").name == "PRELUDE"
    assert "| ENSEMBLE | seat_count | 3,000 |" in markdown_table(table)


def test_tier_overrides_apply_and_bad_ones_refuse_to_start() -> None:
    table = TierTable.from_overrides('{"prelude": {"requests_per_hour": 3, "sessions": 1}}')
    assert table.for_tier("PRELUDE").requests_per_hour == 3
    assert table.for_tier("PRELUDE").sessions == 1
    assert table.for_tier("SOLO") == DEFAULT_TIERS["SOLO"]
    for bad in ("[1]", "{", '{"GOLD": {}}', '{"SOLO": {"speed": 1}}', '{"SOLO": {"sessions": -1}}'):
        with pytest.raises(ConfigError):
            TierTable.from_overrides(bad)


async def test_the_501st_prelude_request_is_refused(redis_state: RedisState) -> None:
    limiter = RateLimiter(redis_state)
    me = identity_for("STUDENT", 1)
    results = [await limiter.hit(me, PRELUDE) for _ in range(500)]
    assert all(r.allowed and r.shared for r in results)
    assert [r.remaining for r in results[-2:]] == [1, 0]
    refused = await limiter.hit(me, PRELUDE)
    assert not refused.allowed
    assert refused.used == 500
    assert refused.headers()["RateLimit-Remaining"] == "0"
    assert 3540 <= int(refused.headers()["Retry-After"]) <= 3600
    error = refused.error()
    assert error.extensions is not None
    assert error.extensions["code"] == "RATE_LIMITED"
    # Another user of the same organization has a budget of their own.
    assert (await limiter.hit(identity_for("STUDENT", 2), PRELUDE)).allowed
    # Teacher 1 is not student 1.
    assert (await limiter.hit(identity_for("TEACHER", 1), PRELUDE)).allowed


async def test_concurrent_hits_never_overshoot(redis_state: RedisState) -> None:
    """The check-and-count is one atomic script: 40 racing requests against a limit of 25 admit 25."""
    limiter = RateLimiter(redis_state)
    tier = replace(PRELUDE, requests_per_hour=25)
    results = await asyncio.gather(*(limiter.hit("student:9", tier) for _ in range(40)))
    assert sum(r.allowed for r in results) == 25


async def test_instances_share_one_count(redis_state: RedisState, redis_prefix: str) -> None:
    other = RedisState(REDIS_URL, redis_prefix)
    try:
        a, b = RateLimiter(redis_state), RateLimiter(other)
        tier = replace(PRELUDE, requests_per_hour=4)
        decisions = [await (a if i % 2 else b).hit("student:5", tier) for i in range(6)]
        assert [d.allowed for d in decisions] == [True, True, True, True, False, False]
    finally:
        await other.close()


async def test_cost_points_are_a_budget_of_their_own(redis_state: RedisState) -> None:
    limiter = RateLimiter(redis_state)
    tier = replace(PRELUDE, cost_per_hour=1000)
    assert (await limiter.hit("teacher:3", tier, cost=600)).allowed
    over = await limiter.hit("teacher:3", tier, cost=500)
    assert not over.allowed
    assert over.cost_used == 600
    assert "cost points" in over.error().message
    cheap = await limiter.hit("teacher:3", tier, cost=400)
    assert cheap.allowed
    assert (cheap.used, cheap.cost_used, cheap.cost_remaining) == (2, 1000, 0)
    peek = await limiter.peek("teacher:3", tier)
    assert (peek.used, peek.cost_used, peek.cost) == (2, 1000, 0)


async def test_in_process_without_redis() -> None:
    limiter = RateLimiter(RedisState(None))
    tier = replace(PRELUDE, requests_per_hour=3)
    decisions = [await limiter.hit("student:1", tier) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert not decisions[0].shared
    assert decisions[-1].headers()["RateLimit-Limit"] == "3"


async def test_redis_stopping_falls_back_and_counts_it(redis_server: RedisServer) -> None:
    state = RedisState(redis_server.url, prefix="t:", probe_seconds=0.0)
    limiter = RateLimiter(state)
    tier = replace(PRELUDE, requests_per_hour=100)
    try:
        assert (await limiter.hit("student:1", tier)).shared
        redis_server.stop()
        before = fallback_count()
        down = await limiter.hit("student:1", tier)
        assert down.allowed
        assert not down.shared
        assert fallback_count() == before + 1
        redis_server.start()
        back = await limiter.hit("student:1", tier)
        assert back.shared
        assert back.allowed
    finally:
        await state.close()


@pytest.fixture
async def limited_app(database_url: str, redis_prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    """An app with quotas on, with a PRELUDE tier small enough to exhaust in a test."""
    overrides = '{"PRELUDE": {"requests_per_hour": 3, "sessions": 2}}'
    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, tier_overrides=overrides
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _post(client: TestClient[Any, Any], query: str, bearer_token: str) -> tuple[int, Any, Any]:
    response = await client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {bearer_token}"}
    )
    return response.status, await response.json(), response.headers


async def test_http_quota_headers_and_429(limited_app: TestClient[Any, Any], clean_db: asyncpg.Pool) -> None:
    org = await factories.make_org(clean_db, tier="PRELUDE")
    teacher = await factories.make_teacher(clean_db, org)
    me = issue_token(DEV_JWT_SECRET, Role.TEACHER, teacher, org, session_id="s-1")
    query = "{ viewer { role rateLimit { limit remaining used cost costLimit shared } } }"
    seen = []
    for _ in range(3):
        status, body, headers = await _post(limited_app, query, me)
        assert status == 200, body
        seen.append(
            (headers["RateLimit-Limit"], headers["RateLimit-Remaining"], body["data"]["viewer"]["rateLimit"])
        )
    assert [s[1] for s in seen] == ["2", "1", "0"]
    assert seen[0][2] == {
        "limit": 3,
        "remaining": 2,
        "used": 1,
        "cost": 2,
        "costLimit": 50_000,
        "shared": True,
    }
    assert seen[0][0] == "3"
    status, body, headers = await _post(limited_app, query, me)
    assert status == 429
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) > 0
    assert headers["RateLimit-Remaining"] == "0"
    assert int(headers["RateLimit-Reset"]) > 0
    # A request refused before execution (validation) is not counted.
    status, body, headers = await _post(limited_app, "{ nope }", me)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_http_session_cap_and_end_session(
    limited_app: TestClient[Any, Any], clean_db: asyncpg.Pool
) -> None:
    org = await factories.make_org(clean_db, tier="PRELUDE")
    # Three teachers (each with a quota of their own) share the organization's two sessions.
    teachers = [await factories.make_teacher(clean_db, org) for _ in range(3)]
    tokens = [
        issue_token(DEV_JWT_SECRET, Role.TEACHER, t, org, session_id=f"sid-{i}")
        for i, t in enumerate(teachers)
    ]
    assert (await _post(limited_app, "{ viewer { role } }", tokens[0]))[0] == 200
    assert (await _post(limited_app, "{ viewer { role } }", tokens[1]))[0] == 200
    status, body, _ = await _post(limited_app, "{ viewer { role } }", tokens[2])
    assert status == 429
    assert body["errors"][0]["extensions"] == {"code": "SESSION_LIMIT", "limit": 2, "active": 2}
    status, body, _ = await _post(limited_app, "mutation { endSession { ended activeSessions } }", tokens[0])
    assert (status, body["data"]) == (200, {"endSession": {"ended": True, "activeSessions": 1}})
    assert (await _post(limited_app, "{ viewer { role } }", tokens[2]))[0] == 200
    status, body, _ = await _post(limited_app, "{ viewer { role } }", tokens[0])
    assert status == 401
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_documented_tier_table_is_the_code() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "REALTIME.md").read_text(encoding="utf-8")
    assert markdown_table(TierTable.from_overrides("")) in docs


def test_support_can_print_the_tiers_in_effect(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLC_TIER_OVERRIDES", '{"SOLO": {"sessions": 12}}')
    assert cli_main(["tiers"]) == 0
    assert "| SOLO | 19 | 1,000 | 100,000 | 12 |" in capsys.readouterr().out


async def test_the_cost_budget_follows_the_tier(clean_db: asyncpg.Pool, database_url: str) -> None:
    """An ENSEMBLE organization may run an operation over the default budget; a PRELUDE one may not."""
    ensemble = await factories.make_org(clean_db, "District", tier="ENSEMBLE", seats=500)
    prelude = await factories.make_org(clean_db, "Trial", tier="PRELUDE", seats=19)
    teachers = {
        ensemble: await factories.make_teacher(clean_db, ensemble),
        prelude: await factories.make_teacher(clean_db, prelude),
    }
    settings = Settings(database_url=database_url)
    # 100 students x 10 assignments x game x category: priced 3,202 x 2 aliases = 6,404 > 5,000.
    query = """{ a: games(first: 100) { edges { node { id } } } b: viewer { teacher { students(first: 100) {
        edges { node { assignments(first: 10) { edges { node { game { category { name } } } } } } } } } }
        c: viewer { teacher { students(first: 100) {
        edges { node { assignments(first: 10) { edges { node { game { category { name } } } } } } } } } } }"""
    async with TestClient(TestServer(create_app(settings))) as client:
        codes: dict[int, str | None] = {}
        for org, teacher in teachers.items():
            token = issue_token(settings.jwt_secret, Role.TEACHER, teacher, org)
            headers = {"Authorization": f"Bearer {token}"}
            # The first request looks the tier up (and is priced on the default budget).
            await client.post("/graphql", json={"query": "{ viewer { role } }"}, headers=headers)
            response = await client.post("/graphql", json={"query": query}, headers=headers)
            payload = await response.json()
            codes[org] = (payload.get("errors") or [{}])[0].get("extensions", {}).get("code")
            if codes[org] is None:
                assert payload["extensions"]["cost"]["budget"] == 10_000
        assert codes == {ensemble: None, prelude: "QUERY_TOO_COMPLEX"}


# --- issue 12 item 15: both quotas visible (RateLimit-Policy / RateLimit), the refusal names its quota ---

POLICY_ITEM = re.compile(r'^"(?P<name>[a-z]+)";q=(?P<q>\d+);w=(?P<w>\d+)(?:;qu="(?P<qu>[a-z-]+)")?$')
STATE_ITEM = re.compile(r'^"(?P<name>[a-z]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _items(header: str, pattern: re.Pattern[str]) -> dict[str, dict[str, str]]:
    """A structured-field List of our Items, keyed by policy id (each member must match `pattern`)."""
    parsed = {}
    for member in header.split(","):
        match = pattern.match(member.strip())
        assert match is not None, f"not a policy item: {member!r}"
        parsed[match["name"]] = {k: v for k, v in match.groupdict().items() if v is not None}
    return parsed


async def test_headers_carry_both_quotas_and_the_legacy_trio_follows_the_tightest() -> None:
    limiter = RateLimiter(RedisState(None))
    tier = replace(PRELUDE, requests_per_hour=500, cost_per_hour=1000)
    first = await limiter.hit("teacher:9", tier, cost=900)
    headers = first.headers()
    assert _items(headers["RateLimit-Policy"], POLICY_ITEM) == {
        "requests": {"name": "requests", "q": "500", "w": "3600"},
        "points": {"name": "points", "q": "1000", "w": "3600", "qu": "cost-points"},
    }
    state = _items(headers["RateLimit"], STATE_ITEM)
    assert (state["requests"]["r"], state["points"]["r"]) == ("499", "100")
    assert int(state["points"]["t"]) == int(headers["RateLimit-Reset"]) > 0
    # 10 % of the points are left and 99.8 % of the requests: the points are the tightest.
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("1000", "100")
    assert first.tightest().name == "points"
    # Requests tighter than points: the trio follows them.
    few = replace(PRELUDE, requests_per_hour=2, cost_per_hour=1000)
    one = await limiter.hit("teacher:10", few, cost=1)
    assert (one.headers()["RateLimit-Limit"], one.headers()["RateLimit-Remaining"]) == ("2", "1")


async def test_a_refusal_says_which_quota_refused_it() -> None:
    limiter = RateLimiter(RedisState(None))
    tier = replace(PRELUDE, requests_per_hour=500, cost_per_hour=1000)
    assert (await limiter.hit("teacher:11", tier, cost=900)).allowed
    over_points = await limiter.hit("teacher:11", tier, cost=200)
    error = over_points.error()
    assert error.extensions is not None
    assert error.extensions["quota"] == "points"
    assert error.extensions["cost"] == 200
    assert "1000 cost points" in error.message
    assert over_points.headers()["RateLimit-Remaining"] == "100"
    assert over_points.headers()["RateLimit-Limit"] == "1000"
    requests_only = replace(PRELUDE, requests_per_hour=1, cost_per_hour=1000)
    assert (await limiter.hit("teacher:12", requests_only)).allowed
    over_requests = (await limiter.hit("teacher:12", requests_only)).error()
    assert over_requests.extensions is not None
    assert over_requests.extensions["quota"] == "requests"
    assert "1 requests" in over_requests.message


@pytest.fixture
async def points_app(database_url: str, redis_prefix: str) -> AsyncIterator[TestClient[Any, Any]]:
    """Plenty of requests, few cost points: the points run out first (the case the old headers hid)."""
    overrides = '{"PRELUDE": {"requests_per_hour": 500, "cost_per_hour": 12}}'
    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, tier_overrides=overrides
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_http_headers_show_the_points_quota_before_it_refuses(
    points_app: TestClient[Any, Any], clean_db: asyncpg.Pool
) -> None:
    org = await factories.make_org(clean_db, tier="PRELUDE")
    teacher = await factories.make_teacher(clean_db, org)
    me = issue_token(DEV_JWT_SECRET, Role.TEACHER, teacher, org, session_id="s-points")
    query = (
        "{ viewer { rateLimit { costUsed limitedBy"
        " quotas { name unit limit used remaining windowSeconds resetAt } } } }"
    )
    answers: list[tuple[int, Any, Any]] = []
    while len(answers) < 20:
        status, body, headers = await _post(points_app, query, me)
        answers.append((status, body, headers))
        if status == 429:
            break
    status, body, headers = answers[-1]
    assert status == 429
    allowed = answers[:-1]
    assert allowed, "the first request should have been allowed"
    _, last_body, last_headers = allowed[-1]
    # The request before the refusal announced it: the legacy trio is the points quota, nearly spent.
    assert last_headers["RateLimit-Limit"] == "12"
    assert int(last_headers["RateLimit-Remaining"]) < 12
    state = _items(last_headers["RateLimit"], STATE_ITEM)
    assert int(state["requests"]["r"]) == 500 - len(allowed)
    assert state["points"]["r"] == last_headers["RateLimit-Remaining"]
    rate = last_body["data"]["viewer"]["rateLimit"]
    assert rate["limitedBy"] == "POINTS"
    quotas = {q["name"]: q for q in rate["quotas"]}
    assert quotas["REQUESTS"]["limit"] == 500
    assert quotas["REQUESTS"]["used"] == len(allowed)
    assert quotas["REQUESTS"]["unit"] == "requests"
    assert quotas["POINTS"]["limit"] == 12
    assert quotas["POINTS"]["unit"] == "cost-points"
    assert quotas["POINTS"]["used"] == rate["costUsed"] == 12 - int(last_headers["RateLimit-Remaining"])
    assert quotas["POINTS"]["windowSeconds"] == 3600
    # The refusal says which quota it was, in the body and in the headers.
    extensions = body["errors"][0]["extensions"]
    assert (extensions["code"], extensions["quota"]) == ("RATE_LIMITED", "points")
    assert "cost points" in body["errors"][0]["message"]
    assert headers["RateLimit-Limit"] == "12"
    assert int(headers["Retry-After"]) > 0
    assert _items(headers["RateLimit-Policy"], POLICY_ITEM)["points"]["q"] == "12"
