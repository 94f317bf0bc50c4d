"""Board-changed notices fanned out to every instance, each delivering to its own sockets.

With Redis, `publish` sends one message with Redis 7's sharded pub/sub (SPUBLISH) on one of
`CHANNELS` channels, `<prefix>lb-updates:{n}` chosen by the board, and every instance (this one
included) hears it through its listener task, which SSUBSCRIBEs to all of them. On a Redis Cluster
each channel lives on the shard of its slot, so a notice travels to one shard only (classic PUBLISH is
broadcast to every node of a cluster), and the channels spread the fan-out over the shards. Without
Redis, or while it is down, notices stay in this process.
A notice carries only the board: subscribers re-read the board, so a lost or merged notice costs
nothing but a refresh. Each subscriber is coalesced: at most one wake-up per `interval`, however many
scores land meanwhile, so a class finishing together does not flood phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter
from redis.asyncio import RedisCluster

from loaders.leaderboards import BoardKey
from mlc_graph.platform.redis import RedisClient, RedisState, RedisUnavailable, tag

log = logging.getLogger(__name__)

# Sharded channels the notices are spread over (16 slots, so a 3 to 16 shard cluster shares the load).
CHANNELS = 16

NOTICES_DELIVERED = Counter(
    "mlc_board_notices", "Board-changed notices received for boards with local subscribers", registry=None
)


def channel_of(board: BoardKey, channels: Sequence[str]) -> str:
    """The board's channel: stable across instances and restarts (crc32, not Python's salted hash)."""
    return channels[zlib.crc32(encode(board).encode()) % len(channels)]


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
        self.channels = [redis.key("lb-updates", tag(n)) for n in range(CHANNELS)]
        self._local: dict[BoardKey, set[BoardListener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.listening = asyncio.Event()

    async def start(self) -> None:
        if self.redis.configured and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="board-updates")

    async def stop(self) -> None:
        if self._task is not None:
            # The flag as well as the cancel: redis-py's cluster pub/sub polling can absorb a
            # cancellation (it reads as a poll timeout), and the listener must still end.
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._stopping = False

    async def publish(self, boards: Sequence[BoardKey]) -> None:
        """Tell every instance these boards changed (only this one while Redis is unavailable)."""
        if not self.listening.is_set():
            # Nobody hears Redis on this instance right now: deliver here directly.
            self._deliver_all(boards)
            with contextlib.suppress(RedisUnavailable):
                await self.redis.run("publish", lambda r: self._publish(r, boards))
            return
        try:
            await self.redis.run("publish", lambda r: self._publish(r, boards))
        except RedisUnavailable:
            self._deliver_all(boards)

    async def _publish(self, client: RedisClient, boards: Sequence[BoardKey]) -> None:
        # One SPUBLISH per board, concurrently: on a cluster they go to different shards.
        await asyncio.gather(*(client.spublish(channel_of(b, self.channels), encode(b)) for b in boards))

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
        while not self._stopping:
            pubsub: Any = None
            try:
                if isinstance(client, RedisCluster):
                    # The slot map now (after a failover: the promoted replicas), so each channel's
                    # SSUBSCRIBE goes to the shard that owns it.
                    await client.nodes_manager.initialize()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.ssubscribe(*self.channels)
                self.listening.set()
                if isinstance(client, RedisCluster):
                    # One connection per shard behind one object; polled in turn.
                    while not self._stopping:
                        message = await pubsub.get_sharded_message(timeout=0.1)
                        if message is not None:
                            self._on_message(message)
                else:
                    async for message in pubsub.listen():
                        self._on_message(message)
            except Exception as exc:
                # Redis went away (or a bug): fan-out must not end for the life of the process.
                self.redis.mark_down(exc)
                log.warning("board update listener stopped (%s); reconnecting", exc)
            finally:
                self.listening.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):  # never let a dead shard hold up the reconnect
                            await pubsub.aclose()
            await asyncio.sleep(self.reconnect_seconds)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == "smessage":
            try:
                board = decode(str(message["data"]))
            except ValueError:
                log.warning("ignored a malformed board notice: %r", message.get("data"))
                return
            self._deliver(board)
