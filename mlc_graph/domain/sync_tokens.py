"""Sync tokens: where a client's copy of the change log ends, signed so that it cannot be forged or moved.

A token names the viewer it was issued to (role, user, organization), a position in the log (a
transaction id and a sequence number: everything at or before it was delivered) and the moment that
position was reached (epoch seconds), which decides when the token expires. It is 42 bytes of that, then
the first 16 bytes of an HMAC-SHA256 over them with a key derived from the server's secret, base64url
without padding. Nothing in it is secret; the MAC makes it tamper-evident.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

VERSION = 1
_LAYOUT = struct.Struct(">B1sQQQQQ")  # version, role letter, org, user, xid, seq, moment
_MAC_BYTES = 16
_KEY_CONTEXT = b"mlc-graph sync token v1"


class SyncTokenError(ValueError):
    """Not a token this server issued (malformed, forged, or signed with another secret)."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A point in the change log, ordered like its rows: (transaction id, sequence number)."""

    xid: int
    seq: int


@dataclass(frozen=True, slots=True)
class SyncClaims:
    role: str  # "STUDENT", "TEACHER" or "ADMIN"
    user_id: int
    org_id: int
    position: Position
    moment: int  # epoch seconds: the token is honoured until moment + retention


def _key(secret: str) -> bytes:
    # A key of its own, so that a sync token can never double as anything else signed with the secret.
    return hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def encode_token(secret: str, token: SyncClaims) -> str:
    payload = _LAYOUT.pack(
        VERSION,
        token.role[:1].encode(),
        token.org_id,
        token.user_id,
        token.position.xid,
        token.position.seq,
        token.moment,
    )
    mac = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


_ROLES = {"S": "STUDENT", "T": "TEACHER", "A": "ADMIN"}


def decode_token(secret: str, text: str) -> SyncClaims:
    """The token's contents once its MAC checks; SyncTokenError otherwise."""
    try:
        raw = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode())
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SyncTokenError("not a sync token") from exc
    if len(raw) != _LAYOUT.size + _MAC_BYTES:
        raise SyncTokenError("not a sync token")
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    expected = hmac.new(_key(secret), payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        raise SyncTokenError("sync token signature does not match")
    version, role, org_id, user_id, xid, seq, moment = _LAYOUT.unpack(payload)
    if version != VERSION or role.decode() not in _ROLES:
        raise SyncTokenError("unknown sync token version")
    return SyncClaims(_ROLES[role.decode()], user_id, org_id, Position(xid, seq), moment)
