"""Which browser pages may use the API: the origin allow-list (MLC_ALLOWED_ORIGINS) that CORS
(mlc_graph.http.cors) and the WebSocket handshake (mlc_graph.ws) share.

| request                                   | CORS headers | WebSocket handshake |
| ----------------------------------------- | ------------ | ------------------- |
| no `Origin` header (curl, servers, apps)  | none needed  | accepted            |
| `Origin` on the list (or the list is `*`) | sent         | accepted            |
| `Origin` of this server itself (GraphiQL) | none needed  | accepted            |
| any other `Origin`, `null` included       | not sent     | refused with 403    |

A browser always sends `Origin` on a WebSocket handshake and never lets a page forge it, so checking it is
what stops a page elsewhere from opening a socket with a token it got hold of. It lives in `guards` because
both the HTTP and the WebSocket layers use it and neither may import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

ANY_ORIGIN = "*"


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The allowed origins, normalized as browsers send them (`scheme://host[:port]`, lower case)."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False

    @classmethod
    def of(cls, allowed: tuple[str, ...]) -> OriginPolicy:
        return cls(frozenset(o for o in allowed if o != ANY_ORIGIN), ANY_ORIGIN in allowed)

    def listed(self, origin: str) -> bool:
        """A cross-origin page the operator allowed (what CORS answers for)."""
        return self.any_origin or origin.lower() in self.origins

    def allows(self, origin: str | None, host: str | None) -> bool:
        """May a request with this `Origin` header, arriving for `host`, go ahead?"""
        if origin is None:
            return True
        return self.listed(origin) or _same_origin(origin, host)


def _same_origin(origin: str, host: str | None) -> bool:
    # The scheme is not compared: behind a TLS-terminating proxy the server sees http for an https page.
    if not host:
        return False
    return urlsplit(origin.lower()).netloc == host.lower()


ORIGINS: web.AppKey[OriginPolicy] = web.AppKey("origin_policy", OriginPolicy)


def handshake_allowed(request: web.Request) -> bool:
    """The WebSocket handshake check: the page's origin is this server's or on the allow-list."""
    return request.app[ORIGINS].allows(request.headers.get("Origin"), request.host)
