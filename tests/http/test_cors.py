"""Issue 12 item 11: CORS for the origins on MLC_ALLOWED_ORIGINS (preflight, headers read and sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.support import factories
from tests.support.http import app_client, bearer, http_settings

Client = TestClient[Any, Any]
SPA = "https://app.mlc.example"
PREFLIGHT = {
    "Origin": SPA,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-cost-dry-run",
}


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with app_client(
        http_settings(database_url, allowed_origins=(SPA, "http://localhost:5173"))
    ) as client:
        yield client


@pytest.fixture
async def teacher(clean_db: asyncpg.Pool) -> dict[str, str]:
    org = await factories.make_org(clean_db)
    return bearer("teacher", await factories.make_teacher(clean_db, org), org)


async def test_preflight_from_an_allowed_origin_names_methods_and_headers(client: Client) -> None:
    response = await client.options("/graphql", headers=PREFLIGHT)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == SPA
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-cost-include-fields", "x-cost-dry-run"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_preflight_from_another_origin_is_refused_without_cors_headers(client: Client) -> None:
    response = await client.options("/graphql", headers={**PREFLIGHT, "Origin": "http://evil.example"})
    assert response.status == 403
    assert (await response.json())["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


async def test_responses_to_an_allowed_origin_expose_quota_retry_and_request_id(
    client: Client, teacher: dict[str, str]
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { role } }"},
        headers={**teacher, "Origin": "http://localhost:5173"},
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ratelimit", "ratelimit-policy", "ratelimit-remaining", "retry-after", "x-request-id"} <= exposed
    assert "Origin" in response.headers["Vary"]
    # Error responses made further in (here an unknown route) carry them too, so the page can read them.
    missing = await client.get("/nowhere", headers={"Origin": SPA})
    assert missing.status == 404
    assert missing.headers["Access-Control-Allow-Origin"] == SPA


async def test_other_origins_and_same_origin_requests_get_no_cors_headers(
    client: Client, teacher: dict[str, str]
) -> None:
    for headers in ({"Origin": "http://evil.example"}, {}):
        response = await client.post(
            "/graphql", json={"query": "{ viewer { role } }"}, headers={**teacher, **headers}
        )
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_without_an_allow_list_no_origin_gets_cors(database_url: str) -> None:
    async with app_client(http_settings(database_url)) as client:
        response = await client.options("/graphql", headers=PREFLIGHT)
        assert response.status == 403
