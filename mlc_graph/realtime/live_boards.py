"""Live leaderboards: one Redis sorted set per game and scope, kept current by committed scores.

Order must equal PostgreSQL's (score desc, then earlier achieved_at, then student id). A double cannot
hold a score plus a microsecond timestamp plus an id, so the sorted-set score is the negated game score
(ascending ZRANGE = best first) and ties fall to the member, which Redis orders bytewise: the member is
`<achieved_at in µs, 17 digits>:<student id, 19 digits>:<org>:<teacher>:<first name>\0<last name>`, so
equal scores rank by time, then id, exactly like the SQL. A hash `<board>:idx` maps student -> member, so
a Lua script can do what ZADD GT does for a fixed member: keep a student's line unless the new best is
higher (or equal and reached earlier, as best_scores keeps it).

The names ride with the line so that a board read needs no statement for them (issue 11): students are
never renamed through the API, and a line is rewritten whenever it is upserted with other data (a
rebuild included). NUL separates them because PostgreSQL text cannot hold one. Lines written before
names were kept end at `<teacher>`; their readers load the names from PostgreSQL.

Boards are caches of best_scores: `<board>:idx` holds `_built` once a board was loaded from PostgreSQL,
and a read of an unbuilt board (new, expired, or lost in a Redis restart) rebuilds it first. Scores
committed while Redis was unreachable mark their boards for rebuild when Redis answers again; on a
Redis Cluster every board is marked, since a failover can lose a write the old primary had acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from loaders.leaderboards import BoardKey
from loaders.live_boards import BoardRow, LiveBoard, LiveEntry, fetch_board_rows
from mlc_graph.platform.db import Executor
from mlc_graph.platform.events import ScoreCommitted
from mlc_graph.platform.redis import RedisState, RedisUnavailable

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Boards nobody writes to for a week are dropped and rebuilt on their next read.
BOARD_TTL_SECONDS = 7 * 24 * 3600
_REBUILD_CHUNK = 500
_MAX_STALE = 10_000
# Decoded top pages, by board and page size, with the reply they came from: a board read again unchanged
# (the common case: many pupils watch one board) reuses its lines instead of decoding 50 members again.
# A page of 100 lines holds ~25 KB (reply strings and entries): 512 pages stay under ~13 MB.
_MAX_PAGES = 512

# KEYS[1] board, KEYS[2] idx. ARGV[1] '1' to mark built, ARGV[2] ttl, then (student, -score, member)*.
_UPSERT = """
local changed = 0
for i = 3, #ARGV, 3 do
  local student, neg, member = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local old = redis.call('HGET', KEYS[2], student)
  local keep = false
  if old then
    local current = tonumber(redis.call('ZSCORE', KEYS[1], old))
    -- Equal scores: the line reached first stays (members sort by achieved_at first), so an offline
    -- play replayed late that tied the best earlier takes the line, as it does in best_scores.
    -- Ties compare the ordering part only (achieved_at, student id: 37 bytes); the same play with other
    -- data (names added, a class changed) replaces the line.
    local old_key, new_key = string.sub(old, 1, 37), string.sub(member, 1, 37)
    if current and (current < neg or (current == neg and (old_key < new_key or old == member))) then
      keep = true
    else
      redis.call('ZREM', KEYS[1], old)
    end
  end
  if not keep then
    redis.call('ZADD', KEYS[1], neg, member)
    redis.call('HSET', KEYS[2], student, member)
    changed = changed + 1
  end
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[2], '_built', '1') end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return changed
"""

# KEYS[1] board, KEYS[2] idx. ARGV: n, student ('' for none). {0} when unbuilt, else {1, top, mine, size}.
_READ = """
if redis.call('HEXISTS', KEYS[2], '_built') == 0 then return {0} end
local n = tonumber(ARGV[1])
local top = {}
if n > 0 then top = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES') end
local mine = {}
if ARGV[2] ~= '' then
  local member = redis.call('HGET', KEYS[2], ARGV[2])
  if member then
    local rank = redis.call('ZRANK', KEYS[1], member)
    if rank then mine = {member, redis.call('ZSCORE', KEYS[1], member), rank} end
  end
end
return {1, top, mine, redis.call('ZCARD', KEYS[1])}
"""


def encode_member(row: BoardRow) -> str:
    micros = (row.achieved_at - _EPOCH) // _MICROSECOND
    line = f"{micros:017d}:{row.student_id:019d}:{row.org_id}:{row.teacher_id}"
    if row.first_name is None or row.last_name is None:
        return line
    return f"{line}:{row.first_name}\0{row.last_name}"


def decode_entry(member: str, neg_score: str | float, rank: int) -> LiveEntry:
    micros, student, org, teacher, *names = member.split(":", 4)
    first = last = None
    if names:
        first, _, last = names[0].partition("\0")
    return LiveEntry(
        rank,
        int(student),
        int(org),
        int(teacher),
        -int(float(neg_score)),
        _EPOCH + timedelta(microseconds=int(micros)),
        first,
        last,
    )


def boards_of(event: ScoreCommitted) -> list[BoardKey]:
    """The three boards a student's best score appears on."""
    return [
        BoardKey(event.game_id, "GLOBAL", None),
        BoardKey(event.game_id, "ORGANIZATION", event.org_id),
        BoardKey(event.game_id, "CLASS", event.teacher_id),
    ]


ChangeListener = Callable[[Sequence[BoardKey]], Awaitable[None]]


class LiveLeaderboards:
    """Reads and updates the Redis boards; RedisUnavailable tells the caller to read PostgreSQL."""

    def __init__(self, redis: RedisState) -> None:
        self.redis = redis
        self._stale: set[BoardKey] = set()
        self._stale_overflow = False
        self._listeners: list[ChangeListener] = []
        self._pages: dict[tuple[BoardKey, int], tuple[list[str], list[LiveEntry]]] = {}
        self._upsert: Any = redis.script(_UPSERT)
        self._read: Any = redis.script(_READ)
        redis.on_recover(self._forget_stale)

    def on_change(self, listener: ChangeListener) -> None:
        """Called with the boards a committed score changed (the pub/sub fan-out subscribes here)."""
        self._listeners.append(listener)

    def keys(self, board: BoardKey) -> list[str]:
        # The braces are a Redis Cluster hash tag: a board and its index live in the same slot.
        name = self.redis.key("lb", f"{{{board.game_id}:{board.scope}:{board.scope_id or 0}}}")
        return [name, name + ":idx"]

    async def score_committed(self, event: ScoreCommitted) -> None:
        """EventBus listener: put the student's new best on their three boards (no-op unless it rose)."""
        if event.stage != "challenge" or event.best is None or event.best_achieved_at is None:
            return
        row = BoardRow(
            event.student_id,
            event.org_id,
            event.teacher_id,
            event.best,
            event.best_achieved_at,
            event.first_name,
            event.last_name,
        )
        boards = boards_of(event)
        args = [event.student_id, -row.score, encode_member(row)]
        try:
            changed = await self.redis.run("leaderboard_write", lambda r: self._write(r, boards, args))
        except RedisUnavailable:
            if self.redis.configured:  # an outage: these boards missed a write
                self._remember_stale(boards)
            changed = boards  # subscribers in this process re-read (from PostgreSQL)
        if changed:
            for listener in self._listeners:
                await listener(changed)

    async def _write(self, client: Any, boards: list[BoardKey], args: list[object]) -> list[BoardKey]:
        # Concurrently rather than pipelined: on a Redis Cluster the three boards live on different shards.
        results = await asyncio.gather(
            *(self._upsert(keys=self.keys(b), args=["0", BOARD_TTL_SECONDS, *args]) for b in boards)
        )
        return [board for board, n in zip(boards, results, strict=True) if int(n) > 0]

    async def read(
        self, db: Executor, board: BoardKey, first: int, student_id: int | None = None
    ) -> LiveBoard:
        """Top `first` and the student's own line; rebuilds the board from PostgreSQL when it is missing."""
        keys = self.keys(board)
        args = [first, "" if student_id is None else student_id]
        raw = await self.redis.run("leaderboard_read", lambda _r: self._read(keys=keys, args=args))
        rebuilt = False
        if int(raw[0]) == 0:
            await self.rebuild(db, board)
            rebuilt = True
            raw = await self.redis.run("leaderboard_read", lambda _r: self._read(keys=keys, args=args))
            if int(raw[0]) == 0:
                raise RedisUnavailable("board vanished during rebuild")
        _, top, mine, size = raw
        page = (board, first)
        known = self._pages.get(page)
        if known is not None and known[0] == top:  # the same members and scores: the same lines
            entries = list(known[1])
        else:
            entries = [decode_entry(top[i], top[i + 1], i // 2 + 1) for i in range(0, len(top), 2)]
            if len(self._pages) >= _MAX_PAGES:
                self._pages.clear()
            self._pages[page] = (top, list(entries))
        viewer = decode_entry(mine[0], mine[1], int(mine[2]) + 1) if mine else None
        return LiveBoard(entries=entries, viewer=viewer, size=int(size), rebuilt=rebuilt)

    async def rebuild(self, db: Executor, board: BoardKey) -> int:
        """Load a board from best_scores (merging with any update that raced the load)."""
        rows = await fetch_board_rows(db, board)
        keys = self.keys(board)
        chunks = [rows[i : i + _REBUILD_CHUNK] for i in range(0, len(rows), _REBUILD_CHUNK)] or [[]]
        for n, chunk in enumerate(chunks, start=1):
            args: list[object] = ["1" if n == len(chunks) else "0", BOARD_TTL_SECONDS]
            for row in chunk:
                args += [row.student_id, -row.score, encode_member(row)]
            await self.redis.run("leaderboard_rebuild", self._upsert_call(keys, args))
        self._stale.discard(board)
        log.info("rebuilt leaderboard %s from PostgreSQL (%d entries)", board, len(rows))
        return len(rows)

    def _upsert_call(self, keys: list[str], args: list[object]) -> Callable[[Any], Awaitable[Any]]:
        return lambda _r: self._upsert(keys=keys, args=args)

    def _remember_stale(self, boards: Sequence[BoardKey]) -> None:
        if len(self._stale) + len(boards) > _MAX_STALE:
            self._stale_overflow = True
            return
        self._stale.update(boards)

    async def _forget_stale(self) -> None:
        """After an outage: boards that missed writes are rebuilt on their next read."""
        client = self.redis.client
        if client is None:
            return
        # A cluster failover loses what the dead primary had not yet replicated, writes this process
        # saw acknowledged included: after any outage there, every board is rebuilt on its next read.
        if self._stale_overflow or self.redis.cluster:
            async for key in client.scan_iter(match=self.redis.key("lb", "*:idx"), count=1000):
                await client.hdel(key, "_built")
        for board in list(self._stale):
            await client.hdel(self.keys(board)[1], "_built")
        self._stale.clear()
        self._stale_overflow = False
