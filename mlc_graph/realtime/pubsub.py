"""Board-changed notices fanned out to every instance, each delivering to its own sockets.

With Redis, `publish` sends one message on `<prefix>lb-updates` and every instance (this one included)
hears it through its listener task; without Redis, or while it is down, notices stay in this process.
A notice carries only the board: subscribers re-read the board, so a lost or merged notice costs
nothing but a refresh. Each subscriber is coalesced: at most one wake-up per `interval`, however many
scores land meanwhile, so a class finishing together does not flood phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from prometheus_client import Counter
from redis.exceptions import RedisError

from loaders.leaderboards import BoardKey
from mlc_graph.platform.redis import RedisState, RedisUnavailable

log = logging.getLogger(__name__)

NOTICES_DELIVERED = Counter(
    "mlc_board_notices", "Board-changed notices received for boards with local subscribers", registry=None
)


def encode(board: BoardKey) -> str:
    return f"{board.game_id}:{board.scope}:{board.scope_id or 0}"


def decode(raw: str) -> BoardKey:
    game, scope, scope_id = raw.split(":")
    return BoardKey(int(game), scope, None if scope == "GLOBAL" else int(scope_id))


class BoardListener:
    """One subscriber's view of one board: registered at once, so no change after creation is missed."""

    __slots__ = ("_dirty", "_last", "_owner", "board")

    def __init__(self, owner: BoardUpdates, board: BoardKey) -> None:
        self._owner = owner
        self.board = board
        self._dirty = asyncio.Event()
        self._last = 0.0

    def notify(self) -> None:
        self._dirty.set()

    async def wait(self) -> None:
        """Return after the next change; changes within `interval` of the last return fold into one."""
        await self._dirty.wait()
        delay = self._last + self._owner.interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._dirty.clear()
        self._last = time.monotonic()

    def close(self) -> None:
        self._owner._remove(self)


class BoardUpdates:
    """Publish and listen for board changes; one per process, started by the app's cleanup context."""

    def __init__(self, redis: RedisState, interval: float = 0.25, reconnect_seconds: float = 1.0) -> None:
        self.redis = redis
        self.interval = interval
        self.reconnect_seconds = reconnect_seconds
        self.channel = redis.key("lb-updates")
        self._local: dict[BoardKey, set[BoardListener]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        if self.redis.configured and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="board-updates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, boards: Sequence[BoardKey]) -> None:
        """Tell every instance these boards changed (only this one while Redis is unavailable)."""
        payloads = [encode(b) for b in boards]
        if not self.listening.is_set():
            # Nobody hears Redis on this instance right now: deliver here directly.
            self._deliver_all(boards)
            with contextlib.suppress(RedisUnavailable):
                await self.redis.run("publish", lambda r: self._publish(r, payloads))
            return
        try:
            await self.redis.run("publish", lambda r: self._publish(r, payloads))
        except RedisUnavailable:
            self._deliver_all(boards)

    async def _publish(self, client: object, payloads: list[str]) -> None:
        async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
            for payload in payloads:
                pipe.publish(self.channel, payload)
            await pipe.execute()

    def _deliver_all(self, boards: Sequence[BoardKey]) -> None:
        for board in boards:
            self._deliver(board)

    def _deliver(self, board: BoardKey) -> None:
        subscribers = self._local.get(board)
        if subscribers:
            NOTICES_DELIVERED.inc()
            for listener in subscribers:
                listener.notify()

    def listen(self, board: BoardKey) -> BoardListener:
        """A listener for `board`; the caller must `close()` it (the subscription's finally block)."""
        listener = BoardListener(self, board)
        self._local.setdefault(board, set()).add(listener)
        return listener

    def _remove(self, listener: BoardListener) -> None:
        listeners = self._local.get(listener.board)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._local[listener.board]

    @property
    def local_subscribers(self) -> int:
        return sum(len(s) for s in self._local.values())

    async def _listen(self) -> None:
        client = self.redis.client
        assert client is not None
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.listening.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(decode(str(message["data"])))
            except (RedisError, OSError) as exc:
                self.redis.mark_down(exc)
            except Exception:
                # A malformed message or a bug must not end fan-out for the life of the process.
                log.exception("board update listener failed; reconnecting")
            finally:
                self.listening.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self.reconnect_seconds)
