"""The tier is resolved once per operation, before the stages that read it, on every transport.

Before the admission pipeline, the cost stage read a tier cache that only the later quota stage filled:
an ENSEMBLE organization's first request after a restart (or after a refused one) was priced against the
default 5,000 instead of its 10,000, and WebSocket operations always were.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from graphql import parse

from mlc_graph.app import create_app
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.keys import PIPELINE
from mlc_graph.platform.config import Settings
from resolvers.schema import schema
from tests.support import factories
from tests.support.http import bearer, http_settings, token

# Between the default budget (5,000) and ENSEMBLE's (10,000): refused on the default, allowed on the tier's.
PRICEY = (
    "query Pricey { games(first: 70) { edges { node { category { games(first: 70) "
    "{ edges { node { id } } } } } } } }"
)
DRY_RUN = {"X-Cost-Dry-Run": "true"}

Client = TestClient[Any, Any]


def test_the_query_costs_between_the_two_budgets() -> None:
    price = CostAnalyzer(schema._schema).analyze(parse(PRICEY)).requested
    assert 5_000 < price <= 10_000


@pytest.fixture
async def ensemble_teacher(clean_db: asyncpg.Pool) -> tuple[int, int]:
    org = await factories.make_org(clean_db, "District", tier="ENSEMBLE")
    return org, await factories.make_teacher(clean_db, org)


async def fresh_client(settings: Settings) -> AsyncIterator[Client]:
    """A server that has never seen any organization (what every instance is after a restart)."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    async for client in fresh_client(http_settings(database_url, batching_enabled=True)):
        yield client


async def budget_of(client: Client, headers: dict[str, str], query: str = PRICEY) -> Any:
    response = await client.post("/graphql", json={"query": query}, headers={**headers, **DRY_RUN})
    payload = await response.json()
    assert response.status == 200, payload
    return payload["extensions"]["cost"]["budget"]


async def test_first_http_request_after_a_restart_gets_the_tier_budget(
    client: Client, ensemble_teacher: tuple[int, int]
) -> None:
    org, teacher = ensemble_teacher
    assert await budget_of(client, bearer("teacher", teacher, org)) == 10_000


async def test_first_operation_of_a_batch_gets_the_tier_budget(
    client: Client, ensemble_teacher: tuple[int, int]
) -> None:
    org, teacher = ensemble_teacher
    batch = [{"query": PRICEY}, {"query": "{ viewer { role } }"}]
    response = await client.post(
        "/graphql", json=batch, headers={**bearer("teacher", teacher, org), **DRY_RUN}
    )
    first, second = await response.json()
    assert response.status == 200
    assert "errors" not in first, first
    assert first["extensions"]["cost"]["budget"] == 10_000
    assert second["extensions"]["cost"]["budget"] == 10_000


async def test_a_refused_request_does_not_change_the_next_ones_budget(
    client: Client, ensemble_teacher: tuple[int, int]
) -> None:
    org, teacher = ensemble_teacher
    headers = bearer("teacher", teacher, org)
    over = PRICEY.replace("first: 70", "first: 100")
    refused = await client.post("/graphql", json={"query": over}, headers=headers)
    body = await refused.json()
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert body["errors"][0]["extensions"]["budget"] == 10_000
    assert await budget_of(client, headers) == 10_000


async def test_first_websocket_operation_gets_the_tier_budget(
    client: Client, ensemble_teacher: tuple[int, int]
) -> None:
    org, teacher = ensemble_teacher
    url = str(client.make_url("/graphql")).replace("http://", "ws://")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("graphql-transport-ws",)) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": {"token": token("teacher", teacher, org)}})
        assert (await ws.receive_json(timeout=5))["type"] == "connection_ack"
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": PRICEY}})
        answer = await ws.receive_json(timeout=10)
        assert answer["type"] == "next", answer
        assert "errors" not in answer["payload"]
        await ws.send_json(
            {"id": "2", "type": "subscribe", "payload": {"query": PRICEY.replace("first: 70", "first: 100")}}
        )
        refused = await ws.receive_json(timeout=10)
        while refused.get("id") != "2":
            refused = await ws.receive_json(timeout=10)
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["budget"] == 10_000


async def test_a_tier_changed_in_the_database_applies_within_the_cache_time(
    database_url: str, clean_db: asyncpg.Pool, ensemble_teacher: tuple[int, int]
) -> None:
    org, teacher = ensemble_teacher
    headers = bearer("teacher", teacher, org)
    # A cache time of zero: every operation reads the tier; the default 60 s bounds it the same way.
    async for client in fresh_client(http_settings(database_url, tier_cache_seconds=0.0)):
        assert await budget_of(client, headers) == 10_000
        await clean_db.execute("UPDATE organizations SET tier = 'SOLO' WHERE id = $1", org)
        response = await client.post("/graphql", json={"query": PRICEY}, headers=headers)
        body = await response.json()
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert body["errors"][0]["extensions"]["budget"] == 5_000


async def test_the_stages_run_in_the_documented_order(client: Client) -> None:
    admission = client.app[PIPELINE].admission
    assert [stage.name for stage in admission.stages] == [
        "persisted",
        "text_limits",
        "anonymous",
        "document",
        "authorize",
        "tier",
        "route",
        "price",
        "quota",
    ]
    assert [finisher.name for finisher in admission.finishers] == [
        "report_cost",
        "remember_persisted",
        "note_write",
    ]
