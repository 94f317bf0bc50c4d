"""GraphQL over HTTP (graphql-over-http spec): POST and GET /graphql, GraphiQL, /healthz and /readyz.

Status codes with `application/graphql-response+json`: 200 when execution ran, 400 for request errors
(parse, validation, variables), 401 unauthenticated, 405 mutation over GET, 406 unacceptable Accept,
413 body too large, 415 unsupported content type, 503 database down. With `application/json` (legacy
clients, and the default without an Accept header) parse and validation errors are 200 as the spec
asks; wrongly typed variables and malformed HTTP requests (bad JSON, wrong member types) are 400 with both.

Every JSON answer says `Cache-Control: no-store`, except GET query answers the schema's hints allow
caches to keep (mlc_graph.http.caching).

Every answer of `graphql_handler` but GraphiQL's page notes its error codes on the request's access record
(`_answer`, `note_answer`) from the body before it is serialized: the observe middleware then need not
search the bytes for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiMapping

from mlc_graph.execution.request import GraphQLParams, OperationRequest, Outcome, Transport
from mlc_graph.http import caching, graphiql, readiness
from mlc_graph.keys import EVENTS, PIPELINE, POOL, REQUEST_ID, SERVICES, SETTINGS, TOKENS, WEBSOCKET
from mlc_graph.observability.access import note_answer
from mlc_graph.observability.logs import request_id_from
from mlc_graph.platform.auth import Principal, bearer_token
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import AuthError, BadRequest, refusal_body, request_error
from resolvers.context import make_context

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_CONTENT_TYPES = {
    GRAPHQL_RESPONSE: GRAPHQL_RESPONSE + "; charset=utf-8",
    JSON: JSON + "; charset=utf-8",
}
READY_TIMEOUT_SECONDS = 1.0


def error_body(message: str, code: str, **details: Any) -> dict[str, Any]:
    """The body of a refusal made before any GraphQL work (routing, content type, Accept)."""
    return refusal_body(request_error(message, code, **details))


def json_response(
    body: Any, status: int = 200, media: str = JSON, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(body=orjson.dumps(body), status=status, headers=headers)
    response.headers["Content-Type"] = _CONTENT_TYPES[media]
    response.headers["Cache-Control"] = caching.NO_STORE
    return response


_STATUS_CODES = {
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every response carries X-Request-ID; HTTP errors from routing become JSON errors too."""
    request_id = request_id_from(request.headers.get("X-Request-ID"))
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "BAD_REQUEST")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        response = json_response(error_body(exc.reason, code), exc.status, headers=headers)
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = json_response(
            error_body("Internal server error", "INTERNAL_SERVER_ERROR", requestId=request_id), 500
        )
    response.headers["X-Request-ID"] = request_id
    return response


def _parse_accept(header: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[media.lower()] = max(quality, weights.get(media.lower(), 0.0))
    return weights


@lru_cache(maxsize=256)
def _negotiate(accept: str) -> tuple[str | None, bool]:
    weights = _parse_accept(accept)
    wildcard = max(weights.get("*/*", 0.0), weights.get("application/*", 0.0))
    graphql_q = weights.get(GRAPHQL_RESPONSE, wildcard)
    json_q = weights.get(JSON, wildcard)
    html_q = weights.get("text/html", 0.0)
    media: str | None
    if graphql_q <= 0 and json_q <= 0:
        media = None
    elif GRAPHQL_RESPONSE in weights and graphql_q >= json_q:
        media = GRAPHQL_RESPONSE
    elif json_q > 0:
        media = JSON
    else:
        media = GRAPHQL_RESPONSE
    return media, html_q > 0 and html_q >= max(graphql_q, json_q)


def negotiate(accept: str | None) -> tuple[str | None, bool]:
    """(response media type or None when nothing acceptable, whether the caller prefers HTML).

    Without an Accept header the answer is application/json, as the spec asks of servers that still
    serve legacy clients. Clients send a handful of distinct Accept values: the verdict is memoized.
    """
    if not accept:
        return JSON, False
    return _negotiate(accept)


def _object_member(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be a JSON object")
    return value


def params_from_body(body: Any) -> GraphQLParams:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object (or an array when batching is enabled)")
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise BadRequest("'query' must be a string")
    operation_name = body.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("'operationName' must be a string")
    return GraphQLParams(
        query=query,
        variables=_object_member(body.get("variables"), "variables"),
        operation_name=operation_name or None,
        extensions=_object_member(body.get("extensions"), "extensions"),
    )


def _json_param(raw: str | None, name: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"'{name}' is not valid JSON") from exc
    return _object_member(value, name)


def params_from_query(query: MultiMapping[str]) -> GraphQLParams:
    return GraphQLParams(
        query=query.get("query") or None,
        variables=_json_param(query.get("variables"), "variables"),
        operation_name=query.get("operationName") or None,
        extensions=_json_param(query.get("extensions"), "extensions"),
    )


async def _read_json(request: web.Request) -> Any:
    content_type = request.headers.get("Content-Type", "")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != JSON:
        raise BadRequest(
            "Send GraphQL requests as 'Content-Type: application/json'",
            "UNSUPPORTED_MEDIA_TYPE",
            415,
            Accept=JSON,
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BadRequest("Only UTF-8 request bodies are accepted", "UNSUPPORTED_MEDIA_TYPE", 415)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.app[SETTINGS].max_body_bytes
        raise BadRequest(f"The request body is larger than {limit} bytes", "PAYLOAD_TOO_LARGE", 413) from exc
    if not raw:
        raise BadRequest("The request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The request body is not valid UTF-8") from exc
        raise BadRequest(f"The request body is not valid JSON: {exc.msg}") from exc


async def authenticate(request: web.Request) -> Principal | None:
    """The caller of a Bearer token; None without an Authorization header; refuses bad tokens."""
    try:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return None
        return await request.app[TOKENS].verify(token)
    except AuthError as exc:
        raise BadRequest(
            f"Authentication failed: {exc}",
            "UNAUTHENTICATED",
            401,
            **{"WWW-Authenticate": 'Bearer realm="mlc-graph", error="invalid_token"'},
        ) from exc


def _prepared(
    request: web.Request, params: GraphQLParams, principal: Principal | None, transport: Transport
) -> OperationRequest:
    app = request.app
    settings = app[SETTINGS]
    db = Executor(app[POOL], QueryStats(), settings.pool.acquire_timeout)
    context = make_context(
        settings,
        db,
        principal,
        request_id=request[REQUEST_ID],
        services=app[SERVICES],
        events=app[EVENTS],
    )
    context.operation_name = params.operation_name
    return OperationRequest(params, context, request.method, request.headers, transport)


def _answer(
    body: Any, status: int = 200, media: str = JSON, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`json_response` for the GraphQL answers and refusals, their error codes noted from `body`."""
    response = json_response(body, status, media, headers)
    note_answer(body)  # once the response exists: a body that fails to serialize must not leave codes
    return response


def _respond(outcome: Outcome, media: str) -> web.Response:
    status = outcome.status if media == GRAPHQL_RESPONSE else outcome.legacy_status
    return _answer(outcome.body, status, media, outcome.headers)


async def _respond_cacheable(request: web.Request, outcome: Outcome, media: str) -> web.Response:
    assert outcome.cache is not None
    response = await caching.cacheable_response(
        request,
        orjson.dumps(outcome.body),
        outcome.status if media == GRAPHQL_RESPONSE else outcome.legacy_status,
        _CONTENT_TYPES[media],
        outcome.headers,
        outcome.cache,
        request.app[SETTINGS].compression,
    )
    # Only an answer without errors is cacheable, so a 304 (no body) has the same codes as its answer: none.
    note_answer(outcome.body)
    return response


async def graphql_handler(request: web.Request) -> web.StreamResponse:
    """POST and GET /graphql (and GraphiQL for browsers in development); a GET that asks to upgrade goes
    to the WebSocket feature's handler when it is installed."""
    get = request.method == "GET"
    # Here rather than in a middleware: the upgrade check then costs HTTP requests one comparison, not a
    # wrapper each, and the socket still passes every middleware (observe counts it in its gauge).
    if get and request.headers.get("Upgrade", "").lower() == "websocket":
        upgrade = request.app.get(WEBSOCKET)
        if upgrade is not None:
            return await upgrade(request)
    settings = request.app[SETTINGS]
    media, wants_html = negotiate(request.headers.get("Accept"))
    if get and wants_html and not settings.production:
        return graphiql.page_response()
    if media is None:
        return _answer(
            error_body(f"Acceptable response types: {GRAPHQL_RESPONSE}, {JSON}", "NOT_ACCEPTABLE"), 406
        )
    try:
        if get:
            body: Any = params_from_query(request.rel_url.query)
        else:
            body = await _read_json(request)
        principal = await authenticate(request)
        if isinstance(body, list):
            return await _batch(request, body, principal, media)
        params = body if isinstance(body, GraphQLParams) else params_from_body(body)
    except BadRequest as exc:
        return _answer(refusal_body(exc.errors()), exc.status, media, exc.headers)
    outcome = await request.app[PIPELINE].run(_prepared(request, params, principal, Transport.HTTP))
    if outcome.cache is not None:
        return await _respond_cacheable(request, outcome, media)
    return _respond(outcome, media)


async def _batch(
    request: web.Request, bodies: list[Any], principal: Principal | None, media: str
) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.batching_enabled:
        raise BadRequest("Batched requests are not enabled on this server", "BATCHING_DISABLED")
    if not bodies:
        raise BadRequest("The batch is empty")
    if len(bodies) > settings.max_batch_operations:
        raise BadRequest(
            f"A batch may hold at most {settings.max_batch_operations} operations, got {len(bodies)}",
            "BATCH_LIMIT_EXCEEDED",
        )
    params = [params_from_body(body) for body in bodies]
    pipeline = request.app[PIPELINE]
    outcomes = await asyncio.gather(
        *(pipeline.run(_prepared(request, p, principal, Transport.BATCH)) for p in params)
    )
    # One status for many operations: the worst refusal that is not a GraphQL request error, else 200.
    statuses = [o.legacy_status for o in outcomes if o.legacy_status != 200]
    status = max(statuses) if statuses else 200
    return _answer([o.body for o in outcomes], status, media)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers; never touches the database (a slow DB must not get us restarted)."""
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """Readiness (mlc_graph.http.readiness): a busy pool is told apart from an unreachable database."""
    ready = await readiness.probe(request.app[POOL], READY_TIMEOUT_SECONDS)
    return json_response(ready.body, ready.status)


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/graphql", graphql_handler)
    app.router.add_route("POST", "/graphql", graphql_handler)
    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    if not app[SETTINGS].production:
        graphiql.add_routes(app)
