"""The legacy `graphql-ws` subprotocol (subscriptions-transport-ws) on /graphql, for older clients.

Apollo Kotlin 3's default `SubscriptionWsProtocol`, older Apollo iOS and many existing apps speak it.
Only the messages differ from graphql-transport-ws; the socket's admission is the same
`mlc_graph.ws.subscriptions.Connection` (auth from `connection_init`, the session, the per-socket cap,
and every operation through the admission pipeline: limits, cost, quotas):

    client                                  server
    connection_init {authorization|token}   -> connection_ack, then ka every KEEPALIVE_SECONDS
                                               (or connection_error {message}, then close 4403)
    start {id, payload}                     -> data* then complete    (or error {message, extensions})
    stop {id}                               -> complete                (the operation is stopped)
    connection_terminate                    -> the server closes the socket (1000)

An `error` payload is one error object (the protocol's clients read a map), the first of the refusal's
errors. As in subscriptions-transport-ws, a `start` reusing a running id replaces that operation. The
close codes of the current protocol apply where this one has none of its own: 4400 malformed message,
4401 start before the ack, 4408 no connection_init in time, 4429 a second connection_init.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

from mlc_graph.ws.subscriptions import PROTOCOLS, CloseSocket, Connection

PROTOCOL = "graphql-ws"
KEEPALIVE_SECONDS = 15.0


class LegacyConnection(Connection):
    """A socket speaking subscriptions-transport-ws; everything but the message names is inherited."""

    RESULT = "data"

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        super().__init__(request, ws)
        self._ka: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._ka is not None:
                self._ka.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ka

    async def handle(self, text: str) -> None:
        message = self._parse(text)
        kind = message.get("type")
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "start":
            op_id = message.get("id")
            running = self.operations.pop(op_id, None) if isinstance(op_id, str) else None
            if running is not None:
                running.cancel()  # the protocol's rule: a start with a running id replaces it
            await self._subscribe(message)
        elif kind == "stop":
            op_id = str(message.get("id"))
            task = self.operations.pop(op_id, None)
            if task is not None:
                task.cancel()
                await self.send({"id": op_id, "type": "complete"})
        elif kind == "connection_terminate":
            await self.ws.close()
        else:
            raise CloseSocket(4400, f"Invalid message received: unknown type {kind!r}")

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise CloseSocket(4400, "Invalid message received: not JSON") from exc
        if not isinstance(message, dict):
            raise CloseSocket(4400, "Invalid message received: not an object")
        return message

    async def _init(self, payload: Any) -> None:
        try:
            await super()._init(payload)
        except CloseSocket as refused:
            if refused.code == 4403:  # the protocol tells the client why before the socket closes
                await self.send({"type": "connection_error", "payload": {"message": refused.reason}})
            raise

    async def _acknowledged(self) -> None:
        await self.send({"type": "connection_ack"})
        await self.send({"type": "ka"})
        self._ka = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while not self.ws.closed:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            await self.send({"type": "ka"})

    async def _send_errors(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        await self.send({"id": op_id, "type": "error", "payload": errors[0]})


def install(app: web.Application) -> None:
    """Serve the legacy subprotocol beside the current one (after mlc_graph.ws.subscriptions.install)."""
    app[PROTOCOLS][PROTOCOL] = LegacyConnection
