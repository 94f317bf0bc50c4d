"""Bearer JWT authentication: who is asking, in which organization, in which session.

Two kinds of token are accepted, told apart by the header's `alg`:
- HS256, signed with MLC_JWT_SECRET by `mlc-graph token` (development, tests, internal tools), with the
  claims `sub`, `role`, `org`, `sid`, `exp`;
- RS256 or ES256 from a school's identity provider (MLC_JWKS_URL), verified against its published keys
  (mlc_graph.platform.jwks), with `iss`, `aud` and `exp` checked and the caller read from the configured
  claims.
Anything else (alg none, an HMAC token claiming a provider key, a provider token while none is
configured) is refused.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass

import jwt

from mlc_graph.platform.config import IdentityProviderSettings
from mlc_graph.platform.errors import AuthError
from mlc_graph.platform.jwks import PROVIDER_ALGORITHMS, JwksKeys, SigningKeyUnknown

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 12 * 3600


class Role(enum.Enum):
    STUDENT = "STUDENT"
    TEACHER = "TEACHER"
    ADMIN = "ADMIN"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: `user_id` is a student id for STUDENT, a teacher id otherwise."""

    role: Role
    user_id: int
    org_id: int
    session_id: str

    @property
    def is_staff(self) -> bool:
        return self.role is not Role.STUDENT

    def can_see_org(self, org_id: int) -> bool:
        return self.org_id == org_id

    def can_see_student(self, student_id: int, org_id: int) -> bool:
        """Students see themselves; teachers and admins see every student of their organization."""
        if self.role is Role.STUDENT:
            return student_id == self.user_id and org_id == self.org_id
        return org_id == self.org_id


def issue_token(
    secret: str,
    role: Role,
    user_id: int,
    org_id: int,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    session_id: str | None = None,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(user_id),
        "role": role.value,
        "org": org_id,
        "sid": session_id or uuid.uuid4().hex,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    """Verify signature, algorithm and expiry; refuse anything else (alg none, other keys, bad claims)."""
    return _decode(secret, token)[0]


def _decode(secret: str, token: str) -> tuple[Principal, float]:
    """The verified caller and the token's expiry (epoch seconds)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "role", "org"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    try:
        role = Role(str(claims["role"]).upper())
        user_id = int(claims["sub"])
        org_id = int(claims["org"])
    except (ValueError, TypeError) as exc:
        raise AuthError("invalid token claims") from exc
    session_id = str(claims.get("sid") or claims["sub"])
    return Principal(role=role, user_id=user_id, org_id=org_id, session_id=session_id), float(claims["exp"])


class IdentityProvider:
    """A provider's keys and what its tokens must say (issuer, audience), and where they say who."""

    __slots__ = ("keys", "settings")

    def __init__(self, settings: IdentityProviderSettings, keys: JwksKeys | None = None) -> None:
        self.settings = settings
        self.keys = keys or JwksKeys(settings.jwks_url, settings.refresh_seconds, settings.max_age_seconds)

    async def decode(self, token: str, algorithm: str, kid: str | None) -> tuple[Principal, float]:
        settings = self.settings
        try:
            key = await self.keys.key_for(kid)
        except SigningKeyUnknown as exc:
            raise AuthError("token signed by an unknown key") from exc
        if key.algorithm_name != algorithm:
            raise AuthError("invalid token")  # the header's alg must be the key's own
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=settings.issuer,
                audience=settings.audience,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise AuthError("token issued by or for someone else") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token") from exc
        try:
            role = Role(str(_claim(claims, settings.role_claim)).upper())
            id_claim = settings.student_claim if role is Role.STUDENT else settings.teacher_claim
            user_id = int(_claim(claims, id_claim))
            org_id = int(_claim(claims, settings.org_claim))
        except (KeyError, ValueError, TypeError) as exc:
            raise AuthError("invalid token claims") from exc
        session_id = str(claims.get("sid") or claims.get("sub") or user_id)
        return Principal(role, user_id, org_id, session_id), float(claims["exp"])


def _claim(claims: dict[str, object], name: str) -> str | int:
    """A claim by dotted name (`mlc.org` is `claims["mlc"]["org"]`): KeyError when absent, TypeError
    when it is not a string or an integer."""
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            raise KeyError(name)
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(name)
    return value


class TokenVerifier:
    """Verifies either kind of token, with a bounded memory of tokens already verified until each expires.

    A client sends the same token on every request; verifying its signature and parsing its JSON each
    time was about a tenth of a small query's CPU. A remembered token is still refused once past its
    `exp`; only tokens that verified are remembered, keyed by their full text (signature included).
    """

    __slots__ = ("_known", "_provider", "_secret", "max_entries")

    def __init__(
        self, secret: str, provider: IdentityProvider | None = None, max_entries: int = 10_000
    ) -> None:
        self._secret = secret
        self._provider = provider
        self._known: dict[str, tuple[Principal, float]] = {}
        self.max_entries = max_entries

    @classmethod
    def for_settings(cls, secret: str, provider: IdentityProviderSettings | None) -> TokenVerifier:
        return cls(secret, IdentityProvider(provider) if provider is not None else None)

    async def verify(self, token: str, now: float | None = None) -> Principal:
        return (await self.verify_with_expiry(token, now))[0]

    async def verify_with_expiry(self, token: str, now: float | None = None) -> tuple[Principal, float]:
        """The caller and when their token expires (epoch seconds): a socket must not outlive it."""
        known = self._known.get(token)
        moment = time.time() if now is None else now
        if known is not None:
            if known[1] > moment:
                return known
            del self._known[token]
            raise AuthError("token expired")
        verified = await self._decode(token)
        if len(self._known) >= self.max_entries:
            self._known.clear()  # rare (more live tokens than entries); cheaper than tracking recency
        self._known[token] = verified
        return verified

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token") from exc
        algorithm = header.get("alg")
        if algorithm == ALGORITHM:
            return _decode(self._secret, token)
        if algorithm in PROVIDER_ALGORITHMS and self._provider is not None:
            kid = header.get("kid")
            return await self._provider.decode(token, algorithm, kid if isinstance(kid, str) else None)
        raise AuthError("invalid token")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is no header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()
