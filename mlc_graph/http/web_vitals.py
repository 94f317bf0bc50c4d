"""POST /api/analytics/web-vitals: real-user performance samples from the SPA, as beacons send them.

`navigator.sendBeacon(url, JSON.stringify(metric))` and `fetch(url, {body, keepalive: true})` send JSON
text as `text/plain;charset=UTF-8` (a CORS-safelisted type, so no preflight): this endpoint takes that
as well as `application/json`. Accepting text/plain is safe here because a sample changes no user data,
only analytics, and every sample is bounded (mlc_graph.domain.vitals). One object or an array of them;
204 when stored, 400/413/415 with a JSON error otherwise. One INSERT per request.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from loaders.web_vitals import insert_web_vitals
from mlc_graph.domain.vitals import MAX_BODY_BYTES, InvalidMetric, metrics_from
from mlc_graph.http.view import error_body, json_response
from mlc_graph.keys import POOL, SETTINGS
from mlc_graph.platform.auth import AuthError, bearer_token, decode_token
from mlc_graph.platform.db import DatabaseUnavailableError, Executor, QueryStats

log = logging.getLogger(__name__)

PATH = "/api/analytics/web-vitals"
_MEDIA_TYPES = ("application/json", "text/plain")


def _refuse(status: int, code: str, message: str) -> web.Response:
    return json_response(error_body(message, code), status)


def _page_from_referer(request: web.Request) -> str:
    """The page a beacon came from when the sample does not say: the Referer's path (never its query)."""
    referer = request.headers.get("Referer")
    return urlsplit(referer).path or "/" if referer else "/"


def _org_id(request: web.Request) -> int | None:
    """The sender's organization when a valid token came along; beacons usually carry none, and a bad
    token must not lose a sample, so any problem just means "unknown"."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return None
        return decode_token(request.app[SETTINGS].jwt_secret, token).org_id
    except AuthError:
        return None


async def web_vitals_handler(request: web.Request) -> web.Response:
    media = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        return _refuse(415, "UNSUPPORTED_MEDIA_TYPE", "Send samples as application/json or text/plain JSON")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refuse(413, "PAYLOAD_TOO_LARGE", f"The body is larger than {MAX_BODY_BYTES} bytes")
    # Chunked bodies have no length up front: read at most one byte past the cap to tell.
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
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
        await insert_web_vitals(Executor(request.app[POOL], QueryStats()), metrics, _org_id(request))
    except DatabaseUnavailableError:
        log.warning("web vitals dropped: database unavailable")
        return _refuse(503, "SERVICE_UNAVAILABLE", "Try again later")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, web_vitals_handler)
