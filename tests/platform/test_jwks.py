"""Identity-provider tokens: RS256/ES256 verified against a JWKS this test serves on loopback and rotates."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mlc_graph.app import create_app
from mlc_graph.platform.auth import IdentityProvider, Principal, Role, TokenVerifier
from mlc_graph.platform.config import ConfigError, IdentityProviderSettings, Settings
from mlc_graph.platform.errors import AuthError
from mlc_graph.platform.jwks import JwksKeys
from tests.support import factories
from tests.support.database import TENANT_TABLES
from tests.support.http import GRAPHQL_RESPONSE, http_settings, token

ISSUER = "https://idp.school.example/"
AUDIENCE = "mlc-graph"
SECRET = "s" * 32


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any
    public_jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": kid or self.kid})


def rsa_key(kid: str) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "RS256", private, {**jwk, "kid": kid, "alg": "RS256", "use": "sig"})


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "ES256", private, {**jwk, "kid": kid, "use": "sig"})  # alg implied by the curve


@dataclass
class Provider:
    """The identity provider's JWKS endpoint: serves `published`, counts how often it is asked."""

    url: str
    published: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    down: bool = False


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    state = Provider(url="")

    async def jwks(_request: web.Request) -> web.Response:
        state.fetches += 1
        if state.down:
            return web.Response(status=503, text="maintenance")
        return web.json_response({"keys": [key.public_jwk for key in state.published]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/.well-known/jwks.json"))
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
def published(provider: Provider) -> Provider:
    provider.published = []
    provider.fetches = 0
    provider.down = False
    return provider


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "role": "teacher",
        "org": 7,
        "iat": now,
        "exp": now + 600,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def hmac_token(payload: dict[str, Any], secret: bytes, header: dict[str, Any]) -> str:
    """A JWT signed by hand (PyJWT rightly refuses to HMAC with a public key)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{part(orjson.dumps(header))}.{part(orjson.dumps(payload))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier_for(provider: Provider, clock: Clock, **settings: Any) -> TokenVerifier:
    options = IdentityProviderSettings(jwks_url=provider.url, issuer=ISSUER, audience=AUDIENCE, **settings)
    keys = JwksKeys(provider.url, refresh_seconds=60, max_age_seconds=3600, clock=clock)
    return TokenVerifier(SECRET, IdentityProvider(options, keys))


async def test_rs256_and_es256_tokens_verify_and_a_rotated_key_is_picked_up_without_restart(
    published: Provider,
) -> None:
    old, ec_signer = rsa_key("2026-01"), ec_key("ec-1")
    published.published = [old, ec_signer]
    clock = Clock()
    verifier = verifier_for(published, clock)

    assert await verifier.verify(old.sign(claims(sid="s-1"))) == Principal(Role.TEACHER, 42, 7, "s-1")
    assert await verifier.verify(ec_signer.sign(claims(sub="43"))) == Principal(Role.TEACHER, 43, 7, "43")
    assert published.fetches == 1, "the key set is fetched once and cached"

    # The provider rotates: a new key is published and the old one withdrawn.
    new = rsa_key("2026-02")
    published.published = [new, ec_signer]
    clock.now += 61  # past the refetch interval
    assert (await verifier.verify(new.sign(claims(sub="44")))).user_id == 44
    assert published.fetches == 2, "an unknown kid made one refetch"
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(old.sign(claims(sub="45")))  # withdrawn: not in the refetched set
    assert published.fetches == 2, "and no refetch before the interval passes"


async def test_an_unknown_kid_refetches_at_most_once_per_interval(published: Provider) -> None:
    known, stranger = rsa_key("known"), rsa_key("stranger")
    published.published = [known]
    clock = Clock()
    verifier = verifier_for(published, clock)
    await verifier.verify(known.sign(claims()))
    assert published.fetches == 1
    for n in range(5):  # a burst of tokens naming a key nobody published
        with pytest.raises(AuthError, match="unknown key"):
            await verifier.verify(stranger.sign(claims(sub=str(100 + n))))
    assert published.fetches == 1, "within the interval: no refetch at all"
    clock.now += 60
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(stranger.sign(claims(sub="200")))
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(stranger.sign(claims(sub="201")))
    assert published.fetches == 2, "one refetch for the new interval, then none"
    # Known keys keep verifying without asking the provider.
    await verifier.verify(known.sign(claims(sub="300")))
    assert published.fetches == 2
    # Past the cache's maximum age the whole set is fetched again on the next use.
    clock.now += 3600
    await verifier.verify(known.sign(claims(sub="301")))
    assert published.fetches == 3


async def test_a_provider_outage_keeps_the_keys_already_known(published: Provider) -> None:
    key, newcomer = rsa_key("k1"), rsa_key("k2")
    published.published = [key]
    clock = Clock()
    verifier = verifier_for(published, clock)
    await verifier.verify(key.sign(claims()))
    published.down = True
    published.published = [key, newcomer]
    clock.now += 3600  # the cached set is stale: the next use tries to refetch, and that fails
    assert (await verifier.verify(key.sign(claims(sub="2")))).user_id == 2
    with pytest.raises(AuthError, match="unknown key"):
        await verifier.verify(newcomer.sign(claims(sub="3")))
    assert published.fetches == 2, "the failed fetch counts against the interval too"
    published.down = False
    clock.now += 60
    assert (await verifier.verify(newcomer.sign(claims(sub="4")))).user_id == 4
    assert published.fetches == 3


async def test_issuer_audience_expiry_and_algorithm_are_checked(published: Provider) -> None:
    key = rsa_key("k")
    published.published = [key]
    verifier = verifier_for(published, Clock())
    with pytest.raises(AuthError, match="someone else"):
        await verifier.verify(key.sign(claims(iss="https://evil.example/")))
    with pytest.raises(AuthError, match="someone else"):
        await verifier.verify(key.sign(claims(aud="another-api")))
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(key.sign(claims(aud=None)))  # audience required
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(key.sign(claims(exp=int(time.time()) - 10)))
    with pytest.raises(AuthError, match="invalid token claims"):
        await verifier.verify(key.sign(claims(role="janitor")))
    # HMAC "signed" with the provider's public key: an old algorithm-confusion attack.
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = hmac_token(claims(), public_pem, {"alg": "HS256", "typ": "JWT", "kid": "k"})
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(confused)
    # A provider key used with another algorithm than its own.
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(jwt.encode(claims(), key.private, algorithm="RS512", headers={"kid": "k"}))
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(jwt.encode(claims(), "", algorithm="none"))
    # Without a provider configured, RS256 tokens are refused; HS256 ones still verify.
    plain = TokenVerifier(SECRET)
    with pytest.raises(AuthError, match="invalid token"):
        await plain.verify(key.sign(claims()))
    assert (await plain.verify(token("student", 5, 7, secret=SECRET))).role is Role.STUDENT
    assert (await verifier.verify(token("student", 5, 7, secret=SECRET))).user_id == 5


async def test_the_caller_is_read_from_the_configured_claims(published: Provider) -> None:
    key = ec_key("ec")
    published.published = [key]
    verifier = verifier_for(
        published,
        Clock(),
        role_claim="mlc.role",
        org_claim="mlc.org",
        student_claim="mlc.student_id",
        teacher_claim="mlc.teacher_id",
    )
    student = claims(
        sub="idp-user-1", role=None, org=None, mlc={"role": "STUDENT", "org": "9", "student_id": 31}
    )
    assert await verifier.verify(key.sign(student)) == Principal(Role.STUDENT, 31, 9, "idp-user-1")
    admin = claims(sub="idp-user-2", role=None, org=None, mlc={"role": "admin", "org": 9, "teacher_id": "12"})
    assert await verifier.verify(key.sign(admin)) == Principal(Role.ADMIN, 12, 9, "idp-user-2")
    missing = claims(role=None, org=None, mlc={"role": "teacher", "org": 9})  # no teacher id claim
    with pytest.raises(AuthError, match="invalid token claims"):
        await verifier.verify(key.sign(missing))


def test_a_jwks_url_needs_issuer_and_audience() -> None:
    with pytest.raises(ConfigError, match="http"):
        Settings.from_env(
            {"MLC_JWKS_URL": "file:///etc/passwd", "MLC_JWT_ISSUER": "i", "MLC_JWT_AUDIENCE": "a"}
        )
    with pytest.raises(ConfigError, match="MLC_JWT_ISSUER"):
        Settings.from_env({"MLC_JWKS_URL": "https://idp.example/jwks", "MLC_JWT_AUDIENCE": "x"})
    settings = Settings.from_env(
        {
            "MLC_JWKS_URL": "https://idp.example/jwks",
            "MLC_JWT_ISSUER": ISSUER,
            "MLC_JWT_AUDIENCE": AUDIENCE,
            "MLC_JWKS_REFRESH_SECONDS": "30",
            "MLC_JWT_ORG_CLAIM": "school",
        }
    )
    assert settings.identity_provider == IdentityProviderSettings(
        "https://idp.example/jwks", ISSUER, AUDIENCE, refresh_seconds=30.0, org_claim="school"
    )
    assert Settings.from_env({}).identity_provider is None


async def test_the_server_admits_provider_tokens_over_http_and_websocket(
    published: Provider, pool: asyncpg.Pool, database_url: str
) -> None:
    await pool.execute(f"TRUNCATE {TENANT_TABLES} RESTART IDENTITY CASCADE")
    org = await factories.make_org(pool)
    teacher = await factories.make_teacher(pool, org, "Ada", "Lovelace")
    key = rsa_key("live")
    published.published = [key]
    identity = IdentityProviderSettings(jwks_url=published.url, issuer=ISSUER, audience=AUDIENCE)
    app = create_app(http_settings(database_url, identity_provider=identity))
    sso = key.sign(claims(sub=str(teacher), org=org, sid="sso-session"))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { role teacher { displayName } } }"},
            headers={"Authorization": f"Bearer {sso}", "Accept": GRAPHQL_RESPONSE},
        )
        assert response.status == 200
        assert orjson.loads(await response.read())["data"] == {
            "viewer": {"role": "TEACHER", "teacher": {"displayName": "A. Lovelace"}}
        }
        forged = rsa_key("live").sign(claims(sub=str(teacher), org=org))  # same kid, another private key
        response = await client.post(
            "/graphql", json={"query": "{ viewer { role } }"}, headers={"Authorization": f"Bearer {forged}"}
        )
        assert response.status == 401
        assert (await response.json())["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

        ws = await client.ws_connect("/graphql", protocols=("graphql-transport-ws",))
        await ws.send_str(orjson.dumps({"type": "connection_init", "payload": {"token": sso}}).decode())
        message = await ws.receive(timeout=10)
        assert message.type is WSMsgType.TEXT
        assert orjson.loads(message.data) == {"type": "connection_ack"}
        await ws.close()
    assert published.fetches == 1
