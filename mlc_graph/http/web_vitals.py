"""POST /api/analytics/web-vitals: real-user performance samples from the SPA, as beacons send them.

`navigator.sendBeacon(url, JSON.stringify(metric))` and `fetch(url, {body, keepalive: true})` send JSON
text as `text/plain;charset=UTF-8` (a CORS-safelisted type, so no preflight): this endpoint takes that
as well as `application/json`. Accepting text/plain is safe here because a sample changes no user data,
only analytics, and every sample is bounded (mlc_graph.domain.vitals). One object or an array of them;
204 when stored, 400/413/415 with a JSON error otherwise. One INSERT per request.

Nobody signs in to send a beacon, so each client address may send `MLC_WEB_VITALS_PER_MINUTE` of them a
minute (mlc_graph.guards.address_limit; 429 `RATE_LIMITED` with Retry-After beyond), and the body is read
up to MAX_BODY_BYTES whatever its framing: a chunked body one byte over is refused with 413.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from loaders.web_vitals import insert_web_vitals
from mlc_graph.domain.vitals import MAX_BODY_BYTES, InvalidMetric, metrics_from
from mlc_graph.guards.address_limit import AddressLimiter
from mlc_graph.http.client_address import Network, client_address, trusted_networks
from mlc_graph.http.view import error_body, json_response
from mlc_graph.keys import POOL, REALTIME, SETTINGS, TOKENS
from mlc_graph.platform.auth import bearer_token
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import AuthError, DatabaseUnavailableError

log = logging.getLogger(__name__)

PATH = "/api/analytics/web-vitals"
_MEDIA_TYPES = ("application/json", "text/plain")
BEACON_LIMIT: web.AppKey[AddressLimiter] = web.AppKey("beacon_limit", AddressLimiter)
TRUSTED_PROXIES: web.AppKey[tuple[Network, ...]] = web.AppKey("trusted_proxies")


def _refuse(status: int, code: str, message: str) -> web.Response:
    return json_response(error_body(message, code), status)


def _page_from_referer(request: web.Request) -> str:
    """The page a beacon came from when the sample does not say: the Referer's path (never its query)."""
    referer = request.headers.get("Referer")
    return urlsplit(referer).path or "/" if referer else "/"


async def _org_id(request: web.Request) -> int | None:
    """The sender's organization when a valid token came along; beacons usually carry none, and a bad
    token must not lose a sample, so any problem just means "unknown"."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return None
        return (await request.app[TOKENS].verify(token)).org_id
    except AuthError:
        return None


async def _read_bounded(request: web.Request) -> bytes | None:
    """The whole body, or None once it grows past MAX_BODY_BYTES (`read(n)` alone returns whatever has
    arrived, so a body sent in several chunks would be cut short)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
    return b"".join(parts)


async def _over_limit(request: web.Request) -> web.Response | None:
    realtime = request.app.get(REALTIME)
    redis = realtime.redis if realtime is not None else None
    trusted: tuple[Network, ...] = request.app[TRUSTED_PROXIES]
    address = client_address(request, trusted)
    decision = await request.app[BEACON_LIMIT].hit(address, redis)
    if decision.allowed:
        return None
    limit = request.app[BEACON_LIMIT].per_minute
    response = _refuse(429, "RATE_LIMITED", f"At most {limit} beacons per minute from one address")
    response.headers["Retry-After"] = str(decision.retry_after)
    return response


async def web_vitals_handler(request: web.Request) -> web.Response:
    if (refused := await _over_limit(request)) is not None:
        return refused
    media = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        return _refuse(415, "UNSUPPORTED_MEDIA_TYPE", "Send samples as application/json or text/plain JSON")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refuse(413, "PAYLOAD_TOO_LARGE", f"The body is larger than {MAX_BODY_BYTES} bytes")
    # Chunked bodies have no length up front: read at most one byte past the cap to tell.
    raw = await _read_bounded(request)
    if raw is None:
        return _refuse(413, "PAYLOAD_TOO_LARGE", f"The body is larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _refuse(400, "BAD_REQUEST", f"The body is not valid JSON: {exc.msg}")
    try:
        metrics = metrics_from(payload, default_page=_page_from_referer(request))
    except InvalidMetric as exc:
        return _refuse(400, "BAD_USER_INPUT", str(exc))
    try:
        await insert_web_vitals(Executor(request.app[POOL], QueryStats()), metrics, await _org_id(request))
    except DatabaseUnavailableError:
        log.warning("web vitals dropped: database unavailable")
        return _refuse(503, "SERVICE_UNAVAILABLE", "Try again later")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app[BEACON_LIMIT] = AddressLimiter(app[SETTINGS].web_vitals_per_minute)
    app[TRUSTED_PROXIES] = trusted_networks(app[SETTINGS].trusted_proxies)
    app.router.add_post(PATH, web_vitals_handler)
