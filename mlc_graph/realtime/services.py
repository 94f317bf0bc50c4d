"""The real-time services of one process: live boards in Redis and their fan-out over pub/sub.

The app factory makes one `Realtime` and hands its parts to every Context (`resolvers.services`), so
resolvers read live boards and listen for updates without importing this package.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlc_graph.platform.config import Settings
from mlc_graph.platform.redis import RedisState
from mlc_graph.realtime.live_boards import LiveLeaderboards
from mlc_graph.realtime.pubsub import BoardUpdates


@dataclass(slots=True)
class Realtime:
    redis: RedisState
    boards: LiveLeaderboards
    updates: BoardUpdates

    @classmethod
    def create(cls, settings: Settings) -> Realtime:
        redis = RedisState(settings.redis_url, prefix=settings.redis_prefix)
        boards = LiveLeaderboards(redis)
        updates = BoardUpdates(redis, interval=settings.leaderboard_coalesce_ms / 1000)
        boards.on_change(updates.publish)
        return cls(redis=redis, boards=boards, updates=updates)

    async def start(self) -> None:
        await self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.redis.close()
