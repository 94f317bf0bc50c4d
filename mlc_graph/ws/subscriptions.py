"""GraphQL over WebSocket at /graphql: the graphql-transport-ws protocol (graphql-ws, Apollo, urql).

    client                                  server
    connection_init {authorization|token}   -> connection_ack          (or close 4403 / 4408 / 4429)
    subscribe {id, payload}                 -> next* then complete     (or error)
    complete {id}                           -> (stops that operation)
    ping                                    -> pong

Close codes: 4400 malformed message, 4401 subscribe before ack, 4403 token refused or session limit,
4406 subprotocol not offered, 4408 no connection_init in time, 4409 duplicate operation id, 4429 a
second connection_init, 4500 an unexpected server error. Documents go through the HTTP pipeline's
cache and validation (so the same limits and cost budget apply); every `subscribe` counts as one
request (with its cost points) against the user's hourly quota, and at most
`max_subscriptions_per_connection` operations run per socket.

`install(app)` is the app feature of issue 5: Redis, quotas, live boards, fan-out and this route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler
from graphql import ExecutionResult, GraphQLError, OperationType, execute, subscribe

from mlc_graph.execution.context import Context, make_context
from mlc_graph.execution.pipeline import PreparedRequest, RequestRefused, _client_error
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.guards.cost.stage import COST, requested_cost
from mlc_graph.guards.origins import handshake_allowed
from mlc_graph.keys import EVENTS, PIPELINE, POOL, SERVICES, SETTINGS
from mlc_graph.platform.auth import AuthError, Principal, bearer_token, decode_token
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.realtime.services import SERVICE, Realtime, realtime_of

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT_SECONDS = 3.0
REALTIME = web.AppKey("realtime", Realtime)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("graphql_sockets")
ANALYZER: web.AppKey[Callable[[], CostAnalyzer]] = web.AppKey("realtime_cost_analyzer")


class _Close(Exception):  # noqa: N818 - control flow: close the socket with this code
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _principal_from(payload: Any, secret: str) -> tuple[Principal, float]:
    """The caller and when their token expires (epoch seconds): a socket must not outlive its token."""
    if not isinstance(payload, dict):
        raise AuthError("connection_init needs a payload with 'authorization' or 'token'")
    raw = payload.get("authorization") or payload.get("Authorization")
    token = bearer_token(raw) if isinstance(raw, str) else payload.get("token")
    if not isinstance(token, str) or not token:
        raise AuthError("connection_init needs a payload with 'authorization' or 'token'")
    principal = decode_token(secret, token)  # verifies signature, algorithm and expiry
    # `exp` is required by decode_token, so it is there and numeric.
    expires: float = jwt.decode(token, options={"verify_signature": False})["exp"]
    return principal, float(expires)


class Connection:
    """One socket: its principal, its running operations, and the protocol state machine."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.app = request.app
        self.ws = ws
        self.settings = request.app[SETTINGS]
        self.realtime = request.app[REALTIME]
        self.principal: Principal | None = None
        self.init_received = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.connection_id = uuid.uuid4().hex[:12]
        self._closing: asyncio.Future[bool] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(orjson.dumps(message).decode())

    async def run(self) -> None:
        timeout = asyncio.get_running_loop().call_later(INIT_TIMEOUT_SECONDS, self._init_timeout)
        try:
            async for msg in self.ws:
                if msg.type is not WSMsgType.TEXT:
                    raise _Close(4400, "Only text frames carry graphql-transport-ws messages")
                await self.handle(msg.data)
        except _Close as close:
            await self.ws.close(code=close.code, message=close.reason.encode()[:120])
        except Exception:
            # e.g. the database down while admitting: graphql-ws's 4500, never an unclosed socket.
            log.exception("websocket connection failed", extra={"request_id": self.connection_id})
            await self.ws.close(code=4500, message=b"Internal server error")
        finally:
            timeout.cancel()
            if self._expiry is not None:
                self._expiry.cancel()
            tasks = [*self.operations.values(), *([self._keepalive] if self._keepalive else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_session(self) -> None:
        """An open socket is an active session: refresh it well within the idle window."""
        interval = max(1.0, self.realtime.sessions.idle_seconds / 3)
        while self.principal is not None and not self.ws.closed:
            await asyncio.sleep(interval)
            tier = await self.realtime.tier_of(self.principal.org_id)
            check = await self.realtime.admit_session(self.principal, tier)
            if not check.admitted:
                await self.ws.close(code=4403, message=b"Forbidden: session ended or over the limit")
                return

    def _expired(self) -> None:
        if not self.ws.closed:
            self._closing = asyncio.ensure_future(
                self.ws.close(code=4403, message=b"Forbidden: token expired")
            )

    def _init_timeout(self) -> None:
        if self.principal is None and not self.ws.closed:
            self._closing = asyncio.ensure_future(
                self.ws.close(code=4408, message=b"Connection initialisation timeout")
            )

    async def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _Close(4400, "Invalid message received: not JSON") from exc
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            task = self.operations.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        else:
            raise _Close(4400, f"Invalid message received: unknown type {kind!r}")

    async def _init(self, payload: Any) -> None:
        if self.init_received:
            raise _Close(4429, "Too many initialisation requests")
        self.init_received = True
        try:
            principal, expires = _principal_from(payload, self.settings.jwt_secret)
        except AuthError as exc:
            raise _Close(4403, f"Forbidden: {exc}") from exc
        tier = await self.realtime.tier_of(principal.org_id)
        session = await self.realtime.admit_session(principal, tier)
        if not session.admitted:
            reason = "SESSION_ENDED" if session.ended else f"SESSION_LIMIT {session.active}/{session.cap}"
            raise _Close(4403, f"Forbidden: {reason}")
        self.principal = principal
        self._keepalive = asyncio.create_task(self._keep_session())
        self._expiry = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), self._expired)
        await self.send({"type": "connection_ack"})

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            raise _Close(4401, "Unauthorized")
        op_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
            raise _Close(4400, "Invalid message received: subscribe needs an 'id' and a 'payload'")
        query = payload.get("query")
        variables = payload.get("variables")
        name = payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (name is None or isinstance(name, str))
        ):
            raise _Close(4400, "Invalid message received: malformed subscribe payload")
        if op_id in self.operations:
            raise _Close(4409, f"Subscriber for {op_id} already exists")
        cap = self.settings.max_subscriptions_per_connection
        if len(self.operations) >= cap:
            await self._error(
                op_id, f"At most {cap} operations may run on one connection", "SUBSCRIPTION_LIMIT"
            )
            return
        parsed = self.app[PIPELINE].document(query)
        operation = parsed.operations.get(name)
        if parsed.errors or parsed.document is None or operation is None:
            errors = list(parsed.errors) or [
                GraphQLError("Unknown operation", extensions={"code": "BAD_REQUEST"})
            ]
            await self.send({"id": op_id, "type": "error", "payload": [e.formatted for e in errors]})
            return
        # The same cost budget as over HTTP, and the price is what the hourly cost points are charged.
        try:
            analysis = self.app[ANALYZER]().analyze(parsed.document, variables, name, cache_key=query)
            analysis.check(self.settings.cost_budget)
        except GraphQLError as refused:
            await self.send({"id": op_id, "type": "error", "payload": [refused.formatted]})
            return
        tier = await self.realtime.tier_of(self.principal.org_id)
        session, quota = await self.realtime.admit(self.principal, tier, max(1, analysis.requested))
        if quota is None:
            error = session.error()
            await self.send({"id": op_id, "type": "error", "payload": [error.formatted]})
            return
        if not quota.allowed:
            await self.send({"id": op_id, "type": "error", "payload": [quota.error().formatted]})
            return
        context = self._context(op_id, name)
        context.rate_limit = quota
        run: Callable[[], Awaitable[None]]
        if operation.operation is OperationType.SUBSCRIPTION:

            async def run() -> None:
                await self._stream(op_id, parsed.document, context, variables, name)

        else:

            async def run() -> None:
                result = execute(self.app[PIPELINE].schema, parsed.document, None, context, variables, name)  # type: ignore[arg-type]
                if asyncio.iscoroutine(result):
                    result = await result
                assert isinstance(result, ExecutionResult)
                await self._next(op_id, result, context)

        self.operations[op_id] = asyncio.create_task(self._operation(op_id, run))

    def _context(self, op_id: str, name: str | None) -> Context:
        db = Executor(self.app[POOL], QueryStats(), self.settings.pool.acquire_timeout)
        context = make_context(
            self.settings,
            db,
            self.principal,
            request_id=f"ws-{self.connection_id}-{op_id}",
            services=self.app[SERVICES],
            events=self.app[EVENTS],
        )
        context.operation_name = name
        return context

    async def _operation(self, op_id: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            return  # the client completed it or the socket closed: nothing more to send
        except Exception:
            log.exception("subscription %s failed", op_id, extra={"request_id": self.connection_id})
            error = GraphQLError("Internal server error", extensions={"code": "INTERNAL_SERVER_ERROR"})
            await self.send({"id": op_id, "type": "error", "payload": [error.formatted]})
            self.operations.pop(op_id, None)
            return
        if self.operations.pop(op_id, None) is not None:
            await self.send({"id": op_id, "type": "complete"})

    async def _stream(
        self, op_id: str, document: Any, context: Context, variables: dict[str, Any] | None, name: str | None
    ) -> None:
        source = subscribe(self.app[PIPELINE].schema, document, None, context, variables, name)
        if asyncio.iscoroutine(source):
            source = await source
        if isinstance(source, ExecutionResult):
            await self._next(op_id, source, context)
            return
        stream: AsyncIterator[ExecutionResult] = source  # type: ignore[assignment]
        try:
            async for result in stream:
                await self._next(op_id, result, context)
        except GraphQLError as error:
            # Raised by the source stream itself (e.g. NOT_FOUND before the first event): graphql-core
            # lets it escape the iterator, so it is reported like any field error, then completed.
            payload = {"data": None, "errors": [_client_error(error, context.request_id)]}
            await self.send({"id": op_id, "type": "next", "payload": payload})
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def _next(self, op_id: str, result: ExecutionResult, context: Context) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [_client_error(e, context.request_id) for e in result.errors]
        await self.send({"id": op_id, "type": "next", "payload": payload})

    async def _error(self, op_id: str, message: str, code: str) -> None:
        error = GraphQLError(message, extensions={"code": code})
        await self.send({"id": op_id, "type": "error", "payload": [error.formatted]})


def refusal(error: GraphQLError, status: int, headers: dict[str, str] | None = None) -> RequestRefused:
    return RequestRefused(error, status=status, legacy_status=status, headers=headers)


async def quota_stage(req: PreparedRequest) -> None:
    """Pipeline stage (before_execute): session cap, then requests and cost points per hour.

    It runs once the document is valid and the caller authenticated, and puts the RateLimit-* headers on
    the response whatever the outcome; requests refused earlier (parse, validation) are not counted.
    """
    principal = req.context.principal
    realtime = realtime_of(req.context)
    if principal is None or realtime is None:
        return  # anonymous callers are refused (or served introspection) by the pipeline itself
    tier = await realtime.tier_of(principal.org_id)
    cost = 1
    if realtime.cost_of is not None:
        cost = max(1, int(realtime.cost_of(req)))
    session, result = await realtime.admit(principal, tier, cost)
    if result is None:
        error = session.error()
        raise refusal(error, getattr(error, "http_status", 429))
    req.context.rate_limit = result
    req.context.response_headers.update(result.headers())
    if not result.allowed:
        raise refusal(result.error(), 429, result.headers())


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    if not handshake_allowed(request):  # issue 12 item 10: a page elsewhere may not open a socket
        raise web.HTTPForbidden(reason="Origin not allowed")
    ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=request.app[SETTINGS].max_body_bytes)
    await ws.prepare(request)
    if ws.ws_protocol != PROTOCOL:
        await ws.close(code=4406, message=b"Subprotocol not acceptable")
        return ws
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        await Connection(request, ws).run()
    finally:
        sockets.discard(ws)
    return ws


async def _close_sockets(app: web.Application) -> None:
    """On shutdown: tell subscribers to reconnect elsewhere (1001 going away) instead of hanging up."""
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")


@web.middleware
async def websocket_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """GET /graphql with an Upgrade: websocket header is a subscription socket; anything else is HTTP."""
    if (
        request.method == "GET"
        and request.path == "/graphql"
        and request.headers.get("Upgrade", "").lower() == "websocket"
    ):
        return await websocket_handler(request)
    return await handler(request)


def install(app: web.Application) -> None:
    """App feature (issue 5): quotas on every request, live boards, fan-out and subscriptions."""
    settings = app[SETTINGS]
    realtime = Realtime.create(settings)
    app[REALTIME] = realtime
    app[SERVICES][SERVICE] = realtime
    pipeline = app[PIPELINE]
    own: list[CostAnalyzer] = []

    def analyzer() -> CostAnalyzer:
        # Share the cost stage's analyzer (weight table and cache) when that feature is installed.
        stage = app.get(COST)
        if stage is not None:
            return stage.analyzer
        if not own:
            own.append(CostAnalyzer(pipeline.schema, cache_size=settings.document_cache_size))
        return own[0]

    def cost_of(req: PreparedRequest) -> int:
        # The cost stage's price when it already ran; else priced here (the analyzer caches both ways).
        priced = requested_cost(req)
        if priced is not None:
            return priced
        if req.document is None:
            return 1
        try:
            analysis = analyzer().analyze(
                req.document, req.params.variables, req.params.operation_name, cache_key=req.params.query
            )
        except GraphQLError:
            return 1
        return analysis.requested

    realtime.cost_of = cost_of
    app[ANALYZER] = analyzer
    cost_stage = app.get(COST)
    if cost_stage is not None:
        default_budget = settings.cost_budget

        def tier_budget(req: PreparedRequest) -> int:
            # The cost stage is synchronous and runs before the quota stage looks the tier up, so it
            # reads the tier cache: an organization's very first request is priced on the default budget.
            principal = req.context.principal
            tier = realtime.cached_tier(principal.org_id) if principal is not None else None
            budget = tier.cost_budget if tier is not None else None
            return default_budget if budget is None else budget

        cost_stage.budget_for = tier_budget
    pipeline.stages.before_execute.append(quota_stage)
    app[EVENTS].on_score(realtime.boards.score_committed)
    app.middlewares.append(websocket_middleware)
    app[SOCKETS] = set()
    app.on_shutdown.append(_close_sockets)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await realtime.start(app[POOL])
        yield
        await realtime.close()

    app.cleanup_ctx.append(lifecycle)
