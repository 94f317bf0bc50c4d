"""Authentication over HTTP: every bad credential is UNAUTHENTICATED with 401, good ones identify the caller."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
from aiohttp.test_utils import TestClient

from mlc_graph.platform.auth import Principal, Role, TokenVerifier, issue_token
from mlc_graph.platform.config import DEV_JWT_SECRET
from mlc_graph.platform.errors import AuthError
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import GRAPHQL_RESPONSE, app_client, http_settings, token

Client = TestClient[Any, Any]
VIEWER = "{ viewer { role student { displayName } teacher { displayName } } }"


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with app_client(http_settings(database_url)) as client:
        yield client


@pytest.fixture(scope="module")
async def people(pool: asyncpg.Pool) -> dict[str, int]:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher = await factories.make_teacher(pool, org, "Grace", "Hopper")
    (student,) = await factories.make_students(pool, org, teacher, 1)
    return {"org": org, "teacher": teacher, "student": student}


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(part)).rstrip(b"=").decode()


def _claims(people: dict[str, int], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": str(people["teacher"]),
        "role": "TEACHER",
        "org": people["org"],
        "sid": "s1",
        "iat": now,
        "exp": now + 600,
        **changes,
    }


async def _post(client: Client, authorization: str | None, query: str = VIEWER) -> tuple[int, Any, Any]:
    headers = {"Accept": GRAPHQL_RESPONSE}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    return response.status, orjson.loads(await response.read()), response.headers


def _refused(status: int, payload: Any, headers: Any) -> None:
    assert status == 401
    assert payload["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in payload
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_missing_token(client: Client, people: dict[str, int]) -> None:
    status, payload, headers = await _post(client, None)
    _refused(status, payload, headers)
    assert "Bearer" in payload["errors"][0]["message"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer-x"])
async def test_malformed_header(client: Client, people: dict[str, int], header: str) -> None:
    _refused(*await _post(client, header))


async def test_garbage_token(client: Client, people: dict[str, int]) -> None:
    _refused(*await _post(client, "Bearer not.a.jwt"))


async def test_wrong_signature(client: Client, people: dict[str, int]) -> None:
    forged = jwt.encode(_claims(people), "someone-elses-secret-of-enough-length!", algorithm="HS256")
    _refused(*await _post(client, f"Bearer {forged}"))


async def test_expired(client: Client, people: dict[str, int]) -> None:
    past = int(time.time()) - 3600
    expired = jwt.encode(_claims(people, iat=past - 60, exp=past), DEV_JWT_SECRET, algorithm="HS256")
    status, payload, headers = await _post(client, f"Bearer {expired}")
    _refused(status, payload, headers)
    assert "expired" in payload["errors"][0]["message"]


async def test_alg_none(client: Client, people: dict[str, int]) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(people))}."
    _refused(*await _post(client, f"Bearer {unsigned}"))


async def test_other_algorithm_with_the_secret(client: Client, people: dict[str, int]) -> None:
    other = jwt.encode(_claims(people), DEV_JWT_SECRET + "x" * 40, algorithm="HS512")
    _refused(*await _post(client, f"Bearer {other}"))


async def test_missing_claims(client: Client, people: dict[str, int]) -> None:
    claims = _claims(people)
    del claims["org"]
    _refused(*await _post(client, f"Bearer {jwt.encode(claims, DEV_JWT_SECRET, algorithm='HS256')}"))


async def test_bad_role_claim(client: Client, people: dict[str, int]) -> None:
    bad = jwt.encode(_claims(people, role="PRINCIPAL"), DEV_JWT_SECRET, algorithm="HS256")
    _refused(*await _post(client, f"Bearer {bad}"))


async def test_refusal_is_401_with_application_json_too(client: Client, people: dict[str, int]) -> None:
    response = await client.post("/graphql", json={"query": VIEWER})
    assert response.status == 401
    response = await client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": "Bearer x"})
    assert response.status == 401


async def test_valid_teacher(client: Client, people: dict[str, int]) -> None:
    jwt_ = token("teacher", people["teacher"], people["org"])
    status, payload, _ = await _post(client, f"Bearer {jwt_}")
    assert status == 200
    assert payload["data"]["viewer"] == {
        "role": "TEACHER",
        "student": None,
        "teacher": {"displayName": "G. Hopper"},
    }


async def test_valid_student(client: Client, people: dict[str, int]) -> None:
    jwt_ = token("student", people["student"], people["org"])
    status, payload, _ = await _post(client, f"Bearer {jwt_}")
    assert status == 200
    assert payload["data"]["viewer"]["role"] == "STUDENT"
    assert payload["data"]["viewer"]["student"] == {"displayName": "First1 L."}


async def test_anonymous_introspection_only_in_development(client: Client, people: dict[str, int]) -> None:
    status, payload, _ = await _post(client, None, "{ __schema { queryType { name } } }")
    assert status == 200
    assert payload["data"]["__schema"]["queryType"]["name"] == "Query"
    fragment = 'query { ...F } fragment F on Query { __typename __type(name: "Query") { name } }'
    status, _, _ = await _post(client, None, fragment)
    assert status == 200
    mixed = "{ __schema { queryType { name } } viewer { role } }"
    _refused(*await _post(client, None, mixed))
    hidden = "query { ...F } fragment F on Query { __typename viewer { role } }"
    _refused(*await _post(client, None, hidden))


async def test_token_verifier_remembers_verified_tokens_until_they_expire() -> None:
    verifier = TokenVerifier("s" * 32)
    issued = time.time()
    token = issue_token("s" * 32, Role.TEACHER, 7, 3, ttl_seconds=60, now=issued)
    first = await verifier.verify(token)
    assert first == Principal(Role.TEACHER, 7, 3, first.session_id)
    assert await verifier.verify(token, now=issued + 30) is first  # remembered: no second decode
    with pytest.raises(AuthError, match="token expired"):
        await verifier.verify(token, now=issued + 61)
    with pytest.raises(AuthError, match="token expired"):
        await verifier.verify(issue_token("s" * 32, Role.TEACHER, 7, 3, ttl_seconds=60, now=issued - 120))
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(forged)
    with pytest.raises(AuthError, match="invalid token"):
        await TokenVerifier("t" * 32).verify(token)
