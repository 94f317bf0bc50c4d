"""What a request loads is freed when it ends, by reference counting, not left to the cycle collector.

A reference cycle through the per-request Loaders (a bound method of theirs held by one of their loaders)
kept every row, page and future of a request alive until Python's cycle collector ran; with 50,000
objects between collections that was a 30-40 ms pause every few dashboards, the whole 1-client p95 of
W1 (docs/PERFORMANCE.md). Here, after a warm-up, the collector is switched off and told to keep what it
finds (DEBUG_SAVEALL): nothing the requests loaded may be among it.
"""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any

import asyncpg

from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support.http import app_client, bearer, http_settings

DASHBOARD = """query($id: ID!) { teacher(id: $id) { students(first: 10) { totalCount edges { node {
  id firstName assignments(first: 5) { edges { node { id dueDate game { id title category { name }
  level { name } } } } } } } } } }"""
LIBRARY = "{ games(first: 5) { edges { cursor node { id title category { name } level { name } } } } }"
# Objects of the data layer: what a request loaded and how it waited for it.
LOADED = ("Row", "Page", "PageArgs", "Future", "Loader", "Loaders")


def _loaded(objects: list[Any]) -> Counter[str]:
    return Counter(
        type(o).__name__ for o in objects if type(o).__name__.endswith(LOADED) or type(o).__name__ in LOADED
    )


async def test_a_request_leaves_nothing_it_loaded_to_the_cycle_collector(
    clean_db: asyncpg.Pool, database_url: str
) -> None:
    org = await factories.make_org(clean_db)
    teacher = await factories.make_teacher(clean_db, org)
    students = await factories.make_students(clean_db, org, teacher, 6)
    _, _, games = await factories.make_catalogue(clean_db, games=3)
    await factories.make_assignments(clean_db, org, students, games)
    headers = bearer("teacher", teacher, org)
    requests = [
        {"query": DASHBOARD, "variables": {"id": encode_global_id("Teacher", teacher)}},
        {"query": LIBRARY},
    ]
    async with app_client(http_settings(database_url)) as client:
        for body in requests * 3:  # warm: documents parsed, plans compiled, pools open
            response = await client.post("/graphql", json=body, headers=headers)
            assert response.status == 200 and "errors" not in await response.json()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for body in requests * 5:
                response = await client.post("/graphql", json=body, headers=headers)
                payload = await response.json()
                assert response.status == 200 and "errors" not in payload, payload
                assert payload["data"]  # the requests did load rows
            gc.collect()
            left = _loaded(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == Counter(), left
