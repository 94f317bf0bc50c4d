"""`python -m bench.micro`: the micro-benchmarks docs/PERFORMANCE.md and docs/COST.md quote, on this machine.

- The admission script (guards/quotas.py `_ADMIT`) called through redis-py's registered script and
  through the pipelined channel (platform/redis_wire.py): client CPU (this process's process time, not
  Redis's) per call on uvloop, with 1 and 32 concurrent callers, on the Redis at `--redis-url` (keys under a
  unique prefix, deleted after).
- Building an eight-field row as a frozen slotted dataclass and as the slotted one with a value hash the
  hot rows use (loaders/base.py ROWS), in microseconds per row.
- `actualQueryCost` of a full teacher dashboard (W1 at its requested sizes: 50 students, 10 assignments
  each), interpreted (guards/cost/report.py `actual_cost`) and compiled (guards/cost/walker.py).
- The rows of a 50-game statement (one category, five levels): `loaders.games._games`, which builds each
  category and level once, against building them once per game as it did before.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvloop
from graphql import parse
from redis.asyncio import Redis

from bench.workloads import BY_KEY
from loaders.games import _GAME_FIELDS, CategoryRow, GameRow, LevelRow, _games
from mlc_graph.guards.cost import CostAnalyzer
from mlc_graph.guards.cost.plan import Selection
from mlc_graph.guards.cost.report import actual_cost
from mlc_graph.guards.cost.walker import compile_walker
from mlc_graph.guards.quotas import _ADMIT
from mlc_graph.platform.redis_wire import LuaScript, ScriptChannel
from resolvers.schema import schema

CALLS = 5000


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], concurrency: int) -> float:
    """Microseconds of this process's CPU per call, `concurrency` callers at once."""

    async def caller(n: int) -> None:
        for _ in range(n):
            await call()

    started = time.process_time()
    await asyncio.gather(*(caller(CALLS // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / CALLS * 1e6


async def admission(redis_url: str) -> None:
    prefix = f"mlc-micro-{uuid.uuid4().hex[:8]}:"
    keys = [f"{prefix}{{o1}}:s", f"{prefix}{{o1}}:e:sid", f"{prefix}rl:{{o1}}:teacher:7"]
    args: list[str | int] = ["sid", 1800, 1_000_000, 3600, 60, 10**9, 10**9, 1, 0]
    client = Redis.from_url(redis_url, decode_responses=True)
    channel = ScriptChannel(redis_url, timeout=2.0)
    registered = client.register_script(_ADMIT)
    lua = LuaScript(_ADMIT)
    try:
        await registered(keys=keys, args=args)
        await channel.run(lua, keys, args)
        for concurrency in (1, 32):
            py = await _cpu_per_call(lambda: registered(keys=keys, args=args), concurrency)
            ours = await _cpu_per_call(lambda: channel.run(lua, keys, args), concurrency)
            print(
                f"admission call, {concurrency:2d} callers: redis-py {py:5.1f} us, channel {ours:5.1f} us CPU"
            )
    finally:
        await client.delete(*keys)
        await client.aclose()
        await channel.close()


@dataclass(frozen=True, slots=True)
class _Frozen:
    a: int
    b: int
    c: int
    d: int
    e: int
    f: datetime
    g: str
    h: str


@dataclass(slots=True, unsafe_hash=True)
class _Row:
    a: int
    b: int
    c: int
    d: int
    e: int
    f: datetime
    g: str
    h: str


def rows() -> None:
    now = datetime.now(UTC)
    kinds: list[type[_Frozen] | type[_Row]] = [_Frozen, _Row]
    for kind in kinds:
        seconds = timeit.timeit(lambda: kind(1, 2, 3, 4, 5, now, "a", "b"), number=200_000)  # noqa: B023
        print(f"eight-field row, {kind.__name__}: {seconds / 200_000 * 1e6:.2f} us")


def _full_answer(selection: Selection) -> dict[str, Any]:
    """An answer with every field present and every list at the size it was priced at."""
    answer: dict[str, Any] = {}
    for key, field in selection.fields.items():
        if field.selection is None:
            answer[key] = "x"
        elif field.size != 1:
            answer[key] = [_full_answer(field.selection) for _ in range(field.size)]
        else:
            answer[key] = _full_answer(field.selection)
    return answer


def cost_walk() -> None:
    dashboard = BY_KEY["W1"]
    analysis = CostAnalyzer(schema._schema).analyze(parse(dashboard.document), {"id": "x"})
    answer = _full_answer(analysis.plan)
    walk = compile_walker(analysis.plan)
    assert walk(answer) == actual_cost(analysis.plan, answer) == analysis.requested
    ways: list[tuple[str, Callable[[], int]]] = [
        ("interpreted", lambda: actual_cost(analysis.plan, answer)),
        ("compiled", lambda: walk(answer)),
    ]
    for name, fn in ways:
        us = timeit.timeit(fn, number=500) / 500 * 1e6
        print(f"actualQueryCost of a full W1 answer (cost {analysis.requested}), {name}: {us:.0f} us")


def _games_per_game(records: Sequence[Any]) -> list[GameRow]:
    """The former `_games`: a category and a level row built for every game, then deduplicated."""
    games = [GameRow(*r[:_GAME_FIELDS]) for r in records]
    categories = {r[3]: CategoryRow(r[3], r[11], r[12]) for r in records}
    levels = {r[4]: LevelRow(r[4], r[13], r[14]) for r in records}
    _ = list(categories.values()), list(levels.values())  # what `_games` hands its references callback
    return games


def game_rows() -> None:
    now = datetime.now(UTC)
    page = [(i, "t", "d", 7, i % 5, 1, 2, "u", "live", now, now, "Cat", "c", "Lvl", 3) for i in range(50)]
    for name, fn in (
        ("each category and level once", lambda: _games(page, lambda _c, _l: None)),
        ("a category and level per game", lambda: _games_per_game(page)),
    ):
        seconds = timeit.timeit(fn, number=4000)
        print(f"rows of a 50-game statement, {name}: {seconds / 4000 * 1e6:.1f} us")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    opts = parser.parse_args(argv)
    uvloop.run(admission(opts.redis_url))  # the server's event loop
    rows()
    cost_walk()
    game_rows()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
