"""Bearer JWT (HS256) authentication: who is asking, in which organization, in which session."""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass

import jwt

from mlc_graph.platform.errors import AuthError

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


class TokenVerifier:
    """decode_token with a bounded memory of tokens already verified, until each one expires.

    A client sends the same token on every request; verifying its HMAC and parsing its JSON each time
    was about a tenth of a small query's CPU. A remembered token is still refused once past its `exp`;
    only tokens that verified are remembered, keyed by their full text (signature included).
    """

    __slots__ = ("_known", "_secret", "max_entries")

    def __init__(self, secret: str, max_entries: int = 10_000) -> None:
        self._secret = secret
        self._known: dict[str, tuple[Principal, float]] = {}
        self.max_entries = max_entries

    def verify(self, token: str, now: float | None = None) -> Principal:
        known = self._known.get(token)
        moment = time.time() if now is None else now
        if known is not None:
            if known[1] > moment:
                return known[0]
            del self._known[token]
            raise AuthError("token expired")
        principal, expiry = _decode(self._secret, token)
        if len(self._known) >= self.max_entries:
            self._known.clear()  # rare (more live tokens than entries); cheaper than tracking recency
        self._known[token] = (principal, expiry)
        return principal


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is no header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()
