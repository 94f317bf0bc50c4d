"""CORS for the origins on the allow-list (mlc_graph.guards.origins): preflights and response headers.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin answers 204 with the
methods and the request headers the product's clients send; from any other origin it answers 403 with
no CORS headers, so the browser blocks the request. Every other response to an allowed origin says so
and exposes the headers clients read: quotas, `Retry-After` and the request id. No credentials mode:
clients authenticate with a bearer token, never cookies, so there is nothing ambient to protect.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from mlc_graph.guards.origins import OriginPolicy
from mlc_graph.http.view import error_body, json_response

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID, X-Cost-Include-Fields, X-Cost-Dry-Run"
EXPOSED_HEADERS = (
    "RateLimit, RateLimit-Policy, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
    "Retry-After, X-Request-ID"
)
# How long a browser may reuse a preflight answer (seconds); Chromium caps it at 7200.
PREFLIGHT_MAX_AGE = "600"


def _preflight(origin: str) -> web.Response:
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE,
            hdrs.VARY: "Origin",
        },
    )


def _add_vary_origin(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY)
    if vary is None:
        response.headers[hdrs.VARY] = "Origin"
    elif "origin" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Origin"


def cors_middleware(policy: OriginPolicy) -> Middleware:
    """The outermost middleware, so error responses made further in carry the headers as well."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return await handler(request)
        preflight = (
            request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        )
        if preflight:
            if not policy.listed(origin):
                return json_response(error_body("Origin not allowed", "FORBIDDEN"), 403)
            return _preflight(origin)
        response = await handler(request)
        if policy.listed(origin) and not response.prepared:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
            _add_vary_origin(response)
        return response

    return middleware
