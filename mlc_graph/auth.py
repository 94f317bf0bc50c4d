"""Bearer JWT (HS256) authentication: who is asking, in which organization, in which session."""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL_SECONDS = 12 * 3600


class Role(enum.Enum):
    STUDENT = "STUDENT"
    TEACHER = "TEACHER"
    ADMIN = "ADMIN"


class AuthError(Exception):
    """The request's credentials were refused; the message is safe to show the client."""


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
    return Principal(role=role, user_id=user_id, org_id=org_id, session_id=session_id)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is no header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()
