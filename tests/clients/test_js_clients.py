"""The JavaScript clients MLC's apps use (Apollo Client, urql, graphql-ws, and subscriptions-transport-ws for
the legacy protocol), run by Node against one server.

Each `*.test.mjs` beside this file is a `node --test` file asserting the data it gets back; this module
seeds the rows, serves the app on a loopback port (with Redis, as in production) and runs each file.
The npm packages are pinned by `package-lock.json` and installed by `make clients` (`npm ci`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from mlc_graph.app import create_app
from resolvers.relay import encode_global_id
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL, TENANT_TABLES
from tests.support.http import http_settings, token

CLIENTS = Path(__file__).resolve().parent
NODE = shutil.which("node")
NODE_TIMEOUT_SECONDS = 90


def _installed() -> bool:
    """npm ci ran for the current lock file (npm writes its own copy of the lock into node_modules)."""
    marker = CLIENTS / "node_modules" / ".package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= (CLIENTS / "package-lock.json").stat().st_mtime


@pytest.fixture(scope="module")
async def client_fixture(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[dict[str, Any]]:
    """One server for every file, and the rows they play with (one game and student per file)."""
    if NODE is None:
        pytest.fail("node is not on PATH: install Node.js 20+ (the Dockerfile's build stage and .ci/run do)")
    if not _installed():
        pytest.fail("the client packages are missing or stale: run `make clients` (npm ci in tests/clients)")
    prefix = f"mlctest:{uuid.uuid4().hex[:10]}:"
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool, "Clients", tier="ENSEMBLE")
    teacher = await factories.make_teacher(pool, org)
    apollo, graphql_ws, rival, urql, legacy = await factories.make_students(pool, org, teacher, 5)
    category, level, games = await factories.make_catalogue(pool, games=5)
    titles = await pool.fetch("SELECT title FROM games ORDER BY created_at DESC")
    category_name = await pool.fetchval("SELECT name FROM categories WHERE id = $1", category)
    level_position = await pool.fetchval("SELECT position FROM levels WHERE id = $1", level)
    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=prefix, leaderboard_coalesce_ms=50
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()

    def player(student: int, game: int) -> dict[str, Any]:
        return {
            "token": token("student", student, org),
            "studentId": encode_global_id("Student", student),
            "gameId": encode_global_id("Game", game),
        }

    graphql_ws_player = player(graphql_ws, games[1])
    graphql_ws_player["rival"] = {"studentId": encode_global_id("Student", rival)}
    try:
        yield {
            "httpUrl": str(server.make_url("/graphql")),
            "wsUrl": str(server.make_url("/graphql")).replace("http://", "ws://"),
            "teacherToken": token("teacher", teacher, org),
            "newestTitles": [row["title"] for row in titles],
            "categoryName": category_name,
            "levelPosition": level_position,
            "players": {
                "apollo": player(apollo, games[0]),
                "graphqlWs": graphql_ws_player,
                "urql": player(urql, games[2]),
                "legacy": player(legacy, games[3]),
            },
        }
    finally:
        await server.close()
        redis_support.delete_prefix(REDIS_URL, prefix)


async def run_node_tests(file: str, fixture: dict[str, Any]) -> tuple[int, str]:
    """`node --test FILE` with the fixture in its environment; its exit code and report."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        "--test",
        "--test-reporter=spec",
        file,
        cwd=CLIENTS,
        env={**os.environ, "CLIENT_FIXTURE": json.dumps(fixture), "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(NODE_TIMEOUT_SECONDS):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, f"node --test {file} did not finish in {NODE_TIMEOUT_SECONDS} s\n{output.decode()}"
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def _passed_count(report: str) -> int:
    """The `pass N` line of node's spec reporter summary (after its information sign)."""
    found = re.search(r"^\S*\s*pass (\d+)\s*$", report, re.MULTILINE)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize(
    ("file", "tests"),
    [("apollo.test.mjs", 2), ("graphql-ws.test.mjs", 2), ("urql.test.mjs", 2), ("legacy-ws.test.mjs", 2)],
)
async def test_javascript_client(file: str, tests: int, client_fixture: dict[str, Any]) -> None:
    code, report = await run_node_tests(file, client_fixture)
    assert code == 0, report
    # Every test in the file ran and passed (a file that silently defined none would also exit 0).
    assert _passed_count(report) == tests, report
