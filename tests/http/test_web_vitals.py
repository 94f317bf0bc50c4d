"""Web vitals: the beacon endpoint (JSON and sendBeacon's text/plain), reportWebVitals, the webVitals report."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis import Redis

from mlc_graph.app import create_app
from mlc_graph.domain.vitals import MAX_BATCH, MAX_BODY_BYTES, rate
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.factories import make_org, make_students, make_teacher
from tests.support.graphql_client import principal, run
from tests.support.http import app_client, bearer, http_settings

PATH = "/api/analytics/web-vitals"
Client = TestClient[Any, Any]


def sample(name: str = "LCP", value: Any = 1800.0, metric_id: str = "v4-1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "id": metric_id, "rating": "good", **extra}


@pytest.fixture
async def vitals_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await clean_db.execute("TRUNCATE web_vitals")
    return clean_db


@pytest.fixture
async def client(vitals_db: asyncpg.Pool, database_url: str) -> AsyncIterator[Client]:
    async with app_client(http_settings(database_url)) as http:
        yield http


async def stored(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT name, value, rating, page, release, navigation_type, org_id FROM web_vitals ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def test_json_sample_is_stored_with_the_page_from_the_referer(
    client: Client, vitals_db: asyncpg.Pool
) -> None:
    response = await client.post(
        PATH,
        data=orjson.dumps(sample("INP", 350, navigationType="navigate", release="2026.11.3")),
        headers={"Content-Type": "application/json", "Referer": "https://app.example/games/7?token=secret"},
    )
    assert response.status == 204
    # The server rates by the published thresholds (INP 350 ms needs improvement), whatever the client said.
    assert await stored(vitals_db) == [
        ("INP", 350.0, "needs-improvement", "/games/7", "2026.11.3", "navigate", None)
    ]


async def test_send_beacon_text_plain_batch_is_accepted(client: Client, vitals_db: asyncpg.Pool) -> None:
    org = await make_org(vitals_db)
    batch = [sample("CLS", 0.3, "a", page="/play"), sample("TTFB", 90, "b", page="/play")]
    response = await client.post(
        PATH,
        data=orjson.dumps(batch),
        headers={"Content-Type": "text/plain;charset=UTF-8", **bearer("teacher", 1, org)},
    )
    assert response.status == 204
    assert [(r[0], r[2], r[3], r[6]) for r in await stored(vitals_db)] == [
        ("CLS", "poor", "/play", org),
        ("TTFB", "good", "/play", org),
    ]


async def test_a_resent_metric_replaces_its_earlier_value(client: Client, vitals_db: asyncpg.Pool) -> None:
    for value in (0.05, 0.12):
        response = await client.post(
            PATH, data=orjson.dumps(sample("CLS", value, "same")), headers={"Content-Type": "text/plain"}
        )
        assert response.status == 204
    assert [(r[0], r[1], r[2]) for r in await stored(vitals_db)] == [("CLS", 0.12, "needs-improvement")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (orjson.dumps(sample("XYZ")), "application/json", 400, "unknown name 'XYZ'"),
        (orjson.dumps(sample("LCP", -1)), "application/json", 400, "outside 0..600000"),
        (orjson.dumps(sample("CLS", 1e9)), "text/plain", 400, "outside 0..100"),
        (orjson.dumps(sample("LCP", "fast")), "application/json", 400, "'value' must be a number"),
        (orjson.dumps({"name": "LCP", "value": 1}), "application/json", 400, "'id' is required"),
        (
            orjson.dumps([sample(metric_id=str(i)) for i in range(MAX_BATCH + 1)]),
            "text/plain",
            400,
            "at most 50",
        ),
        (orjson.dumps([]), "application/json", 400, "no metrics"),
        (b"{not json", "text/plain", 400, "not valid JSON"),
        (orjson.dumps(sample()), "application/x-www-form-urlencoded", 415, "text/plain"),
        (b"[" + b" " * MAX_BODY_BYTES + b"]", "text/plain", 413, "larger than"),
    ],
)
async def test_bad_samples_are_refused_with_a_json_error(
    client: Client, vitals_db: asyncpg.Pool, body: bytes, content_type: str, status: int, fragment: str
) -> None:
    response = await client.post(PATH, data=body, headers={"Content-Type": content_type})
    assert response.status == status
    error = (await response.json())["errors"][0]
    assert fragment in error["message"]
    assert error["extensions"]["code"]
    assert await stored(vitals_db) == []


REPORT = """
mutation Report($input: ReportWebVitalsInput!) {
  reportWebVitals(input: $input) { clientMutationId accepted }
}
"""
SUMMARY = """
query Summary($page: String!, $since: DateTime!, $release: String) {
  webVitals(page: $page, since: $since, release: $release) { name samples p75 good needsImprovement poor }
}
"""


def metric_input(name: str, value: float, metric_id: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "id": metric_id, **extra}


async def test_report_web_vitals_stores_a_batch_in_one_statement(vitals_db: asyncpg.Pool) -> None:
    metrics = [metric_input("LCP", v, f"l{v}", rating="GOOD") for v in (1000, 2000, 3000, 5000)]
    metrics.append(metric_input("LCP", 1500, "l1000"))  # a repeat of the first id: replaces it
    variables = {"input": {"metrics": metrics, "page": "/library", "release": "r1", "clientMutationId": "w"}}
    result, stats = await run(vitals_db, REPORT, variables, None)
    assert result.errors is None, result.errors
    assert result.data == {"reportWebVitals": {"clientMutationId": "w", "accepted": 4}}
    assert stats.statements == 1
    assert sorted(r[1] for r in await stored(vitals_db)) == [1500, 2000, 3000, 5000]


async def test_report_web_vitals_refuses_absurd_values(vitals_db: asyncpg.Pool) -> None:
    variables = {"input": {"metrics": [metric_input("FCP", 10**9, "f")]}}
    result, _ = await run(vitals_db, REPORT, variables, None)
    assert result.errors is not None and result.errors[0].extensions is not None
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"
    assert await stored(vitals_db) == []


async def test_web_vitals_report_gives_p75_and_rating_shares(vitals_db: asyncpg.Pool) -> None:
    org = await make_org(vitals_db)
    teacher = await make_teacher(vitals_db, org)
    lcp = [metric_input("LCP", v, f"l{i}") for i, v in enumerate((1000, 2000, 3000, 5000))]
    cls = [metric_input("CLS", 0.01, "c1"), metric_input("CLS", 0.3, "c2")]
    await run(
        vitals_db, REPORT, {"input": {"metrics": [*lcp, *cls], "page": "/library", "release": "r1"}}, None
    )
    await run(
        vitals_db, REPORT, {"input": {"metrics": [metric_input("LCP", 9000, "x")], "page": "/other"}}, None
    )
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    result, stats = await run(
        vitals_db, SUMMARY, {"page": "/library?x=1", "since": since}, principal("teacher", teacher, org)
    )
    assert result.errors is None, result.errors
    assert result.data == {
        "webVitals": [
            {
                "name": "CLS",
                "samples": 2,
                "p75": pytest.approx(0.2275),
                "good": 0.5,
                "needsImprovement": 0.0,
                "poor": 0.5,
            },
            {"name": "LCP", "samples": 4, "p75": 3500.0, "good": 0.5, "needsImprovement": 0.25, "poor": 0.25},
        ]
    }
    assert stats.statements == 1
    other_release, _ = await run(
        vitals_db,
        SUMMARY,
        {"page": "/library", "since": since, "release": "r2"},
        principal("admin", teacher, org),
    )
    assert other_release.data == {"webVitals": []}


@pytest.mark.parametrize(("role", "code"), [("student", "FORBIDDEN"), (None, "UNAUTHENTICATED")])
async def test_web_vitals_report_is_for_staff(vitals_db: asyncpg.Pool, role: str | None, code: str) -> None:
    org = await make_org(vitals_db)
    (student,) = await make_students(vitals_db, org, await make_teacher(vitals_db, org), 1)
    viewer = principal(role, student, org) if role else None
    result, _ = await run(vitals_db, SUMMARY, {"page": "/", "since": "2026-01-01T00:00:00+00:00"}, viewer)
    assert result.errors is not None and result.errors[0].extensions is not None
    assert result.errors[0].extensions["code"] == code


def test_ratings_follow_the_published_thresholds() -> None:
    assert [rate("LCP", v) for v in (2500, 2501, 4000, 4001)] == [
        "good",
        "needs-improvement",
        "needs-improvement",
        "poor",
    ]
    assert [rate("CLS", v) for v in (0.1, 0.25, 0.26)] == ["good", "needs-improvement", "poor"]


# --- issue 12 item 14: a per-address limit on the unauthenticated beacon, and a bounded body ---


async def _beacons(client: Client, count: int) -> list[int]:
    statuses = []
    for i in range(count):
        response = await client.post(
            PATH, data=orjson.dumps(sample(metric_id=f"v4-limit-{i}")), headers={"Content-Type": "text/plain"}
        )
        statuses.append(response.status)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) > 0
            assert (await response.json())["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    return statuses


def _minute() -> int:
    return int(time.time() // 60)


async def test_one_address_may_send_only_so_many_beacons_a_minute(
    vitals_db: asyncpg.Pool, database_url: str
) -> None:
    for _ in range(2):  # a minute boundary inside the run restarts the count: run once more then
        await vitals_db.execute("TRUNCATE web_vitals")
        async with app_client(http_settings(database_url, web_vitals_per_minute=3)) as client:
            window = _minute()
            statuses = await _beacons(client, 5)
        if _minute() == window:
            break
    assert statuses == [204, 204, 204, 429, 429]
    assert len(await stored(vitals_db)) == 3


async def test_the_beacon_limit_is_shared_through_redis(vitals_db: asyncpg.Pool, database_url: str) -> None:
    """Two instances on one Redis count one address together (the second goes on where the first ended)."""
    redis = Redis.from_url(REDIS_URL)
    for _ in range(2):
        prefix = f"mlctest:{uuid.uuid4().hex[:10]}:"
        settings = http_settings(
            database_url, web_vitals_per_minute=4, redis_url=REDIS_URL, redis_prefix=prefix
        )
        try:
            first = TestClient(TestServer(create_app(settings)))
            second = TestClient(TestServer(create_app(settings)))
            async with first, second:
                window = _minute()
                statuses = await _beacons(first, 2) + await _beacons(second, 3)
            counted = redis.keys(f"{prefix}beacon:*")
        finally:
            redis_support.delete_prefix(REDIS_URL, prefix)
        if _minute() == window:
            break
    redis.close()
    assert statuses == [204, 204, 204, 204, 429]
    assert len(counted) == 1


async def _beacon_from(client: Client, forwarded_for: str) -> int:
    response = await client.post(
        PATH,
        data=orjson.dumps(sample(metric_id=f"v4-{forwarded_for}-{uuid.uuid4().hex[:6]}")),
        headers={"Content-Type": "text/plain", "X-Forwarded-For": forwarded_for},
    )
    return response.status


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    vitals_db: asyncpg.Pool, database_url: str
) -> None:
    for _ in range(2):
        trusted = http_settings(database_url, web_vitals_per_minute=1, trusted_proxies="127.0.0.0/8")
        untrusted = http_settings(database_url, web_vitals_per_minute=1)
        async with app_client(trusted) as behind_proxy, app_client(untrusted) as direct:
            window = _minute()
            via_proxy = [
                await _beacon_from(behind_proxy, "203.0.113.5"),
                await _beacon_from(behind_proxy, "198.51.100.7, 203.0.113.6"),
                await _beacon_from(behind_proxy, "203.0.113.5"),
            ]
            # Without a trusted proxy the header is the client's own words: ignored, the peer counts.
            spoofed = [await _beacon_from(direct, "203.0.113.5"), await _beacon_from(direct, "203.0.113.6")]
        if _minute() == window:
            break
    assert via_proxy == [204, 204, 429]
    assert spoofed == [204, 429]


async def test_a_chunked_body_is_read_whole_and_bounded(client: Client, vitals_db: asyncpg.Pool) -> None:
    body = orjson.dumps([sample(metric_id=f"v4-chunk-{i}") for i in range(20)])

    async def in_pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]
            await asyncio.sleep(0.01)

    whole = await client.post(PATH, data=in_pieces(body, 100), headers={"Content-Type": "text/plain"})
    assert whole.status == 204
    assert len(await stored(vitals_db)) == 20
    too_big = b"[" + b" " * MAX_BODY_BYTES + b"]"
    refused = await client.post(PATH, data=in_pieces(too_big, 8192), headers={"Content-Type": "text/plain"})
    assert refused.status == 413
    assert len(await stored(vitals_db)) == 20
