"""The error codes of /graphql responses in the access line and the metrics (issue 11).

The view notes the codes of the answers it builds, so the observe middleware does not search their bodies;
any other response's codes are read from its body as before. Either way they must be exactly what that
search finds in the bytes the client received (`scan` below is the search itself, left unwrapped).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mlc_graph.app import create_app
from mlc_graph.http import observe
from mlc_graph.http.observe import METRICS
from mlc_graph.http.observe import error_codes as scan
from mlc_graph.http.view import error_body, json_response
from mlc_graph.observability.logs import ACCESS_LOGGER, JsonFormatter
from tests.observability import test_metrics
from tests.support import factories
from tests.support import redis_server as redis_support
from tests.support.database import REDIS_URL
from tests.support.http import GRAPHQL_RESPONSE, app_client, bearer, free_port, http_settings

# Fixtures and helpers of the metrics tests (a module attribute is how pytest finds a fixture).
redis_prefix = redis_support.redis_prefix
teacher = test_metrics.teacher_auth
_samples = test_metrics._samples

Client = TestClient[Any, Any]
VIEWER = "query Me { viewer { role teacher { displayName } } }"
INVALID = "{ viewer { nope } }"
# A variable of the wrong type: a request error (400) with BAD_USER_INPUT.
TYPED = "query Typed($first: Int) { games(first: $first) { totalCount } }"
CATEGORIES = "query Categories { categories { id name } }"  # cacheable over GET: ETag, then 304


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the observe middleware searches for error codes, in order."""
    seen: list[bytes] = []

    def counting(body: bytes) -> tuple[str, ...]:
        seen.append(body)
        return scan(body)

    monkeypatch.setattr(observe, "error_codes", counting)
    return seen


async def _send(
    client: Client, caplog: pytest.LogCaptureFixture, method: str, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, bytes, dict[str, Any]]:
    """The response, the bytes received and the request's access line."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = await client.request(method, "/graphql", **kwargs)
        received = await response.read()
    [line] = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    return response, received, orjson.loads(JsonFormatter().format(line))


def _logged(line: dict[str, Any], received: bytes) -> tuple[str, ...]:
    """The access line's codes, checked against what searching the received bytes finds."""
    codes = tuple(line.get("errors", ()))
    assert codes == scan(received), (line, received[:300])
    return codes


# The counters observe keeps from the codes: requests by outcome, errors by code, quota and database refusals.
COUNTERS = frozenset(
    {
        "mlc_graphql_requests_total",
        "mlc_graphql_errors_total",
        "mlc_rate_limit_refusals_total",
        "mlc_db_unavailable_total",
    }
)


def _counts(client: Client) -> dict[str, float]:
    """The non-zero `COUNTERS` as `name{label=value,...}`."""
    return {
        f"{name}{{{','.join(f'{k}={v}' for k, v in labels)}}}": value
        for (name, labels), value in _samples(client.app[METRICS]).items()
        if name in COUNTERS and value
    }


async def test_view_answers_keep_their_codes_without_a_search(
    database_url: str, teacher: dict[str, str], scanned: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    settings = http_settings(database_url, batching_enabled=True, max_batch_operations=3)
    async with app_client(settings) as client:
        seen: list[tuple[int, tuple[str, ...]]] = []

        async def post(payload: Any, **headers: str) -> None:
            response, received, line = await _send(client, caplog, "POST", json=payload, headers=headers)
            seen.append((response.status, _logged(line, received)))

        await post({"query": VIEWER}, **teacher)
        await post({"query": INVALID}, **teacher)
        await post({"query": INVALID}, **teacher, Accept=GRAPHQL_RESPONSE)
        await post({"query": TYPED, "variables": {"first": "many"}}, **teacher)
        # Every item's errors, in order: the second item answered, the others did not.
        await post(
            [{"query": INVALID}, {"query": VIEWER}, {"query": TYPED, "variables": {"first": "many"}}],
            **teacher,
        )
        await post([{"query": VIEWER}] * 4, **teacher)  # over the batch limit: refused before any ran
        await post({"query": VIEWER}, **teacher, Accept="text/plain")  # 406
        response, received, line = await _send(
            client, caplog, "POST", data=b"{}", headers={"Content-Type": "text/plain"}
        )
        seen.append((response.status, _logged(line, received)))
        response, received, line = await _send(
            client, caplog, "GET", params={"query": CATEGORIES}, headers=teacher
        )
        seen.append((response.status, _logged(line, received)))
        revalidate = {**teacher, "If-None-Match": response.headers["ETag"]}
        response, received, line = await _send(
            client, caplog, "GET", params={"query": CATEGORIES}, headers=revalidate
        )
        seen.append((response.status, _logged(line, received)))
        counts = _counts(client)
    invalid = "GRAPHQL_VALIDATION_FAILED"
    assert seen == [
        (200, ()),
        (200, (invalid,)),
        (400, (invalid,)),
        (400, ("BAD_USER_INPUT",)),
        (400, (invalid, "BAD_USER_INPUT")),  # the worst status of its items other than 200
        (400, ("BATCH_LIMIT_EXCEEDED",)),
        (406, ("NOT_ACCEPTABLE",)),
        (415, ("UNSUPPORTED_MEDIA_TYPE",)),
        (200, ()),
        (304, ()),
    ]
    assert counts == {
        "mlc_graphql_requests_total{category=read,outcome=ok}": 3,
        "mlc_graphql_requests_total{category=read,outcome=rejected}": 7,
        f"mlc_graphql_errors_total{{code={invalid}}}": 3,
        "mlc_graphql_errors_total{code=BAD_USER_INPUT}": 2,
        "mlc_graphql_errors_total{code=BATCH_LIMIT_EXCEEDED}": 1,
        "mlc_graphql_errors_total{code=NOT_ACCEPTABLE}": 1,
        "mlc_graphql_errors_total{code=UNSUPPORTED_MEDIA_TYPE}": 1,
    }
    assert scanned == []


async def test_a_quota_refusal_is_counted_as_one(
    database_url: str,
    pool: asyncpg.Pool,
    redis_prefix: str,
    scanned: list[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    org = await factories.make_org(pool, "Quota", tier="PRELUDE")
    auth = bearer("teacher", await factories.make_teacher(pool, org), org)
    overrides = '{"PRELUDE": {"requests_per_hour": 1}}'
    settings = http_settings(
        database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, tier_overrides=overrides
    )
    async with app_client(settings) as client:
        seen = []
        for _ in range(2):
            response, received, line = await _send(
                client, caplog, "POST", json={"query": VIEWER}, headers=auth
            )
            seen.append((response.status, _logged(line, received)))
        counts = _counts(client)
    assert seen == [(200, ()), (429, ("RATE_LIMITED",))]
    assert counts == {
        "mlc_graphql_requests_total{category=read,outcome=ok}": 1,
        "mlc_graphql_requests_total{category=read,outcome=rejected}": 1,
        "mlc_graphql_errors_total{code=RATE_LIMITED}": 1,
        "mlc_rate_limit_refusals_total{reason=RATE_LIMITED}": 1,
    }
    assert scanned == []


async def test_database_down_is_a_server_error_of_the_primary(
    database_url: str, teacher: dict[str, str], scanned: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/{database_url.rpartition('/')[2]}"
    async with app_client(http_settings(dead)) as client:
        query = {"query": "query Cats { categories { name } }"}
        response, received, line = await _send(client, caplog, "POST", json=query, headers=teacher)
        counts = _counts(client)
    assert (response.status, _logged(line, received)) == (503, ("SERVICE_UNAVAILABLE",))
    assert counts == {
        "mlc_graphql_requests_total{category=read,outcome=error}": 1,
        "mlc_graphql_errors_total{code=SERVICE_UNAVAILABLE}": 1,
        "mlc_db_unavailable_total{pool=primary}": 1,
    }
    assert scanned == []


async def test_responses_made_outside_the_view_are_searched(
    database_url: str, scanned: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    async def gone(_request: web.Request) -> web.Response:
        return json_response({"errors": [error_body("Gone", "GONE")["errors"][0], {"message": "?"}]}, 410)

    app = create_app(http_settings(database_url))
    app.router.add_route("PATCH", "/graphql", gone)  # a handler of /graphql that is not the view
    async with TestClient(TestServer(app)) as client:
        response, received, line = await _send(client, caplog, "PATCH")
        assert (response.status, _logged(line, received)) == (410, ("GONE", "UNKNOWN"))
        assert scanned == [received]
        # A routing refusal passes observe as an exception, its body made outside (request_id_middleware):
        # nothing to search and no GraphQL request, as before; the client still gets the code.
        response, received, line = await _send(client, caplog, "DELETE")
        assert (response.status, line["status"], "errors" in line) == (405, 405, False)
        assert scan(received) == ("METHOD_NOT_ALLOWED",)
        assert len(scanned) == 1
        counts = _counts(client)
    assert counts == {
        "mlc_graphql_requests_total{category=read,outcome=rejected}": 1,
        "mlc_graphql_errors_total{code=GONE}": 1,
        "mlc_graphql_errors_total{code=UNKNOWN}": 1,
    }
