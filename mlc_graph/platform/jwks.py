"""An identity provider's signing keys, fetched from its JWKS URL and kept until they go stale.

Schools sign in through their identity provider, whose tokens are RS256 or ES256 signed by a key it
publishes in a JSON Web Key Set. The set is fetched on first use and cached; a token naming a key id
(`kid`) not in the cache makes one refetch, at most once per `refresh_seconds` however many such tokens
arrive (so forged kids cannot make the server hammer the provider), which is how a rotated key is picked
up without a restart. The whole set is refetched on the first use after `max_age_seconds`, which is how
a key the provider withdrew stops verifying. A failed fetch keeps the keys already known (a provider
outage must not sign everyone out) and is logged. The fetch is rare, so it runs the standard library's
HTTP client in a thread rather than pulling aiohttp into this bottom layer (resolvers import it).

Exceptions:
    SigningKeyUnknown   no usable key with that id, after any refetch the interval allows
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
import orjson

log = logging.getLogger(__name__)

# The asymmetric algorithms a provider key may carry; HS256 never comes from a JWKS (it would let anyone
# holding the public key sign tokens).
PROVIDER_ALGORITHMS = frozenset({"RS256", "ES256"})
FETCH_TIMEOUT_SECONDS = 5.0


class SigningKeyUnknown(Exception):  # noqa: N818 - a condition the verifier turns into AuthError
    """No usable signing key has this id."""


def usable_keys(document: Any) -> dict[str | None, jwt.PyJWK]:
    """The signature keys of a JWKS document by key id, RS256/ES256 only; other members are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS document is an object with a 'keys' list")
    keys: dict[str | None, jwt.PyJWK] = {}
    for member in document["keys"]:
        if not isinstance(member, dict) or member.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(member)
        except jwt.PyJWTError:
            continue  # an unsupported key type or curve: not ours to use
        if key.algorithm_name in PROVIDER_ALGORITHMS:
            keys[key.key_id] = key
    return keys


class JwksKeys:
    """The cached key set of one JWKS URL (see the module docstring for when it is fetched)."""

    def __init__(
        self,
        url: str,
        refresh_seconds: float = 60.0,
        max_age_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        """The key a token's `kid` names (a set of one key also serves tokens without a kid)."""
        key = self._known(kid)
        if key is None or self._stale():
            async with self._lock:  # one fetch for every request waiting on the same new key
                key = self._known(kid)
                if (key is None or self._stale()) and self._may_fetch():
                    await self._fetch()
                    key = self._known(kid)
        if key is None:
            raise SigningKeyUnknown(kid or "(no kid)")
        return key

    def _known(self, kid: str | None) -> jwt.PyJWK | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age_seconds

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self.refresh_seconds

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            keys = usable_keys(await asyncio.to_thread(_download, self.url))
        except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors; bad JSON a ValueError
            log.warning(
                "JWKS fetch from %s failed (%s); keeping %d known keys", self.url, exc, len(self._keys)
            )
            return
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("JWKS from %s: %d signing keys", self.url, len(keys))


def _download(url: str) -> Any:
    """GET the JWKS document (the URL's scheme was checked to be http(s) by the settings)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
        return orjson.loads(response.read())
