"""GraphQL over WebSocket at /graphql: the graphql-transport-ws protocol (graphql-ws, Apollo, urql).

    client                                  server
    connection_init {authorization|token}   -> connection_ack          (or close 4403 / 4408 / 4429)
    subscribe {id, payload}                 -> next* then complete     (or error)
    complete {id}                           -> (stops that operation)
    ping                                    -> pong

Close codes: 4400 malformed message, 4401 subscribe before ack, 4403 token refused or session limit,
4406 subprotocol not offered, 4408 no connection_init in time, 4409 duplicate operation id, 4429 a
second connection_init, 4500 an unexpected server error. Every `subscribe` passes the same admission
pipeline as an HTTP request (mlc_graph.execution.stages: persisted documents, limits, validation, the
tier's cost budget, the hourly quotas), and at most `max_subscriptions_per_connection` operations run
per socket. A refusal is an `error` message whose payload is the refusal body's errors.

The older `graphql-ws` subprotocol (subscriptions-transport-ws) is served on the same path by
mlc_graph.ws.legacy, a subclass of `Connection` with that protocol's message names: the subprotocol the
client offers picks the class (this one when a client offers both), and admission is this module's.

`install(app)` registers the WebSocket handler under `mlc_graph.keys.WEBSOCKET`, where the GET /graphql
handler (mlc_graph.http.view) hands it a request with `Upgrade: websocket` (so a socket passes the same
middlewares as an HTTP request), and adds the shutdown hook. `PROTOCOLS` maps each subprotocol to its
connection class, in the server's order of preference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from graphql import ExecutionResult, GraphQLError, OperationType, subscribe

from mlc_graph.execution.masking import client_error
from mlc_graph.execution.request import GraphQLParams, OperationRequest, Outcome, Transport
from mlc_graph.guards.origins import handshake_allowed
from mlc_graph.keys import EVENTS, PIPELINE, POOL, QUOTAS, SERVICES, SETTINGS, TIERS, TOKENS, WEBSOCKET
from mlc_graph.platform.auth import Principal, TokenVerifier, bearer_token
from mlc_graph.platform.db import Executor, QueryStats
from mlc_graph.platform.errors import AuthError, Refusal, refusal_body, request_error
from resolvers.context import Context, make_context

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT_SECONDS = 3.0
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("graphql_sockets")


class CloseSocket(Exception):  # noqa: N818 - control flow: close the socket with this code
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _principal_from(payload: Any, tokens: TokenVerifier) -> tuple[Principal, float]:
    """The caller and when their token expires (epoch seconds): a socket must not outlive its token."""
    if not isinstance(payload, dict):
        raise AuthError("connection_init needs a payload with 'authorization' or 'token'")
    raw = payload.get("authorization") or payload.get("Authorization")
    token = bearer_token(raw) if isinstance(raw, str) else payload.get("token")
    if not isinstance(token, str) or not token:
        raise AuthError("connection_init needs a payload with 'authorization' or 'token'")
    return await tokens.verify_with_expiry(token)  # signature, algorithm, expiry (and issuer, audience)


class Connection:
    """One socket: its principal, its running operations, and the protocol state machine."""

    # The message a result travels in ("data" in the legacy protocol).
    RESULT = "next"

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.app = request.app
        self.ws = ws
        self.settings = request.app[SETTINGS]
        self.tiers = request.app[TIERS]
        self.quotas = request.app[QUOTAS]
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
                    raise CloseSocket(4400, "Only text frames carry graphql-transport-ws messages")
                await self.handle(msg.data)
        except CloseSocket as close:
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
        interval = max(1.0, self.quotas.sessions.idle_seconds / 3)
        while self.principal is not None and not self.ws.closed:
            await asyncio.sleep(interval)
            tier = await self.tiers.tier_of(self.principal.org_id)
            check = await self.quotas.admit_session(self.principal, tier)
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
            raise CloseSocket(4400, "Invalid message received: not JSON") from exc
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
            raise CloseSocket(4400, f"Invalid message received: unknown type {kind!r}")

    async def _init(self, payload: Any) -> None:
        if self.init_received:
            raise CloseSocket(4429, "Too many initialisation requests")
        self.init_received = True
        try:
            principal, expires = await _principal_from(payload, self.app[TOKENS])
        except AuthError as exc:
            raise CloseSocket(4403, f"Forbidden: {exc}") from exc
        tier = await self.tiers.tier_of(principal.org_id)
        session = await self.quotas.admit_session(principal, tier)
        if not session.admitted:
            reason = "SESSION_ENDED" if session.ended else f"SESSION_LIMIT {session.active}/{session.cap}"
            raise CloseSocket(4403, f"Forbidden: {reason}")
        self.principal = principal
        self._keepalive = asyncio.create_task(self._keep_session())
        self._expiry = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), self._expired)
        await self._acknowledged()

    async def _acknowledged(self) -> None:
        await self.send({"type": "connection_ack"})

    async def _send_errors(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        """An operation refused or failed: its errors, and nothing more for that id."""
        await self.send({"id": op_id, "type": "error", "payload": errors})

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            raise CloseSocket(4401, "Unauthorized")
        op_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
            raise CloseSocket(4400, "Invalid message received: subscribe needs an 'id' and a 'payload'")
        query = payload.get("query")
        variables = payload.get("variables")
        name = payload.get("operationName")
        extensions = payload.get("extensions")
        if (
            not (query is None or isinstance(query, str))
            or not (variables is None or isinstance(variables, dict))
            or not (name is None or isinstance(name, str))
            or not (extensions is None or isinstance(extensions, dict))
        ):
            raise CloseSocket(4400, "Invalid message received: malformed subscribe payload")
        if op_id in self.operations:
            raise CloseSocket(4409, f"Subscriber for {op_id} already exists")
        cap = self.settings.max_subscriptions_per_connection
        if len(self.operations) >= cap:
            await self._error(
                op_id, f"At most {cap} operations may run on one connection", "SUBSCRIPTION_LIMIT"
            )
            return
        pipeline = self.app[PIPELINE]
        request = OperationRequest(
            GraphQLParams(query, variables, name, extensions),
            self._context(op_id, name),
            method="WS",
            transport=Transport.WEBSOCKET,
        )
        try:
            await pipeline.admit(request)
        except Refusal as refused:
            await self._send_errors(op_id, refusal_body(refused.errors)["errors"])
            return
        run: Callable[[], Awaitable[None]]
        operation = request.operation
        assert operation is not None  # admitted: the document stage found it
        if operation.operation is OperationType.SUBSCRIPTION:

            async def run() -> None:
                await self._stream(op_id, request)

        else:

            async def run() -> None:
                await self._answer(op_id, await pipeline.complete(request))

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
            error = request_error("Internal server error", "INTERNAL_SERVER_ERROR")
            await self._send_errors(op_id, refusal_body(error)["errors"])
            self.operations.pop(op_id, None)
            return
        if self.operations.pop(op_id, None) is not None:
            await self.send({"id": op_id, "type": "complete"})

    async def _stream(self, op_id: str, request: OperationRequest) -> None:
        context = request.context
        source = subscribe(
            self.app[PIPELINE].schema,
            request.document,  # type: ignore[arg-type]  # admitted: not None
            None,
            context,
            request.params.variables,
            request.params.operation_name,
        )
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
            payload = {"data": None, "errors": [client_error(error, context.request_id)]}
            await self.send({"id": op_id, "type": self.RESULT, "payload": payload})
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def _next(self, op_id: str, result: ExecutionResult, context: Context) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [client_error(e, context.request_id) for e in result.errors]
        await self.send({"id": op_id, "type": self.RESULT, "payload": payload})

    async def _answer(self, op_id: str, outcome: Outcome) -> None:
        """A query or mutation's one result: `next` with its data and errors (then `complete`)."""
        payload = {key: outcome.body[key] for key in ("data", "errors") if key in outcome.body}
        await self.send({"id": op_id, "type": self.RESULT, "payload": payload})

    async def _error(self, op_id: str, message: str, code: str) -> None:
        await self._send_errors(op_id, refusal_body(request_error(message, code))["errors"])


PROTOCOLS: web.AppKey[dict[str, type[Connection]]] = web.AppKey("graphql_ws_protocols")


def chosen_protocol(request: web.Request) -> str | None:
    """The first of the server's subprotocols the client offers (the server's preference, not the
    client's order: a client offering both protocols understands the current one)."""
    offered = {p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    return next((name for name in request.app[PROTOCOLS] if name in offered), None)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    if not handshake_allowed(request):  # issue 12 item 10: a page elsewhere may not open a socket
        raise web.HTTPForbidden(reason="Origin not allowed")
    protocol = chosen_protocol(request)
    ws = web.WebSocketResponse(
        protocols=(protocol,) if protocol else (), max_msg_size=request.app[SETTINGS].max_body_bytes
    )
    await ws.prepare(request)
    if protocol is None or ws.ws_protocol != protocol:
        await ws.close(code=4406, message=b"Subprotocol not acceptable")
        return ws
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        await request.app[PROTOCOLS][protocol](request, ws).run()
    finally:
        sockets.discard(ws)
    return ws


async def _close_sockets(app: web.Application) -> None:
    """On shutdown: tell subscribers to reconnect elsewhere (1001 going away) instead of hanging up."""
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")


def install(app: web.Application) -> None:
    """The WebSocket handler of GET /graphql, and closing every socket on shutdown."""
    app[WEBSOCKET] = websocket_handler
    protocols: dict[str, type[Connection]] = {PROTOCOL: Connection}
    app[PROTOCOLS] = protocols
    app[SOCKETS] = set()
    app.on_shutdown.append(_close_sockets)
