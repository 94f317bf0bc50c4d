"""The shared Redis connection and its health: what lets every limit and board hold across instances.

Callers run a Redis operation through `RedisState.run`; when Redis is not configured or is failing it
raises `RedisUnavailable` and the caller falls back to its in-process implementation. A failure marks
Redis down for `probe_seconds`, so a dead Redis costs one refused connection per probe interval, not a
timeout per request. Outages are logged once (and once more on recovery) and counted in metrics.

`REDIS_URL` may name a Redis Cluster with the scheme `redis+cluster://` (or `rediss+cluster://`): any
node is a seed, and the client is redis-py's RedisCluster. Every key a Lua script touches carries the
same hash tag (`{...}`), so each script runs on one slot: see `tag` and docs/SCALING.md.

Any exception the client raises counts as a failure, not only RedisError and OSError: a connection torn
down under a request surfaces from redis-py as an AttributeError, a reply it cannot decode as a
UnicodeDecodeError, and either must degrade like an outage rather than fail the request.

Exceptions:
    RedisUnavailable   no REDIS_URL, Redis marked down, or the operation failed (whatever redis-py raised)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge
from prometheus_client.registry import Collector
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mlc_graph.platform.redis_wire import LuaScript, ScriptChannel

log = logging.getLogger(__name__)
T = TypeVar("T")

# Unregistered on purpose (no import-time side effects): the /metrics owner registers `collectors()`.
REDIS_UP = Gauge(
    "mlc_redis_up", "1 while Redis answers, 0 while limits and boards run in process", registry=None
)
REDIS_FALLBACKS = Counter(
    "mlc_redis_fallback",
    "Operations served by the per-instance fallback because Redis was unavailable",
    ["operation"],
    registry=None,
)
REDIS_OUTAGES = Counter("mlc_redis_outages", "Times Redis went from up to unreachable", registry=None)


def collectors() -> list[Collector]:
    """The metric objects of the real-time layer, for the /metrics registry."""
    return [REDIS_UP, REDIS_FALLBACKS, REDIS_OUTAGES]


def fallback_count() -> float:
    """Total operations served in process because Redis was unavailable (all operations)."""
    return sum(
        sample.value
        for m in REDIS_FALLBACKS.collect()
        for sample in m.samples
        if sample.name.endswith("_total")
    )


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# What callers get: either client has the commands, scripts and pub/sub the real-time layer uses.
RedisClient = Redis | RedisCluster
# A registered Lua script: `await script(keys=[...], args=[...])`, on either path (see RedisState.script).
ScriptCall = Callable[..., Awaitable[Any]]


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def connect(url: str, timeout: float, decode_responses: bool = True) -> RedisClient:
    """A client for REDIS_URL: RedisCluster for `redis+cluster://`, else a plain Redis.

    No retries inside redis-py: a failing call falls back at once and RedisState's probe interval decides
    when to try again. The cluster client refreshes its slot map after a failed call, so the probe after
    a failover reaches the promoted replica.
    """
    retry = Retry(NoBackoff(), 0)
    scheme, _, rest = url.partition("://")
    if scheme.lower() in CLUSTER_SCHEMES:
        return RedisCluster.from_url(
            f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}",
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=retry,
            decode_responses=decode_responses,
        )
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
        decode_responses=decode_responses,
    )


def tag(value: object) -> str:
    """A Redis Cluster hash tag: keys that share it live in one slot (and so one Lua script may use them)."""
    return f"{{{value}}}"


class RedisUnavailable(Exception):  # noqa: N818 - a condition, not a bug: callers fall back
    """Redis is not configured or not answering; use the in-process fallback."""


class RedisState:
    """One Redis client per process (created by the app factory) plus its health."""

    def __init__(
        self,
        url: str | None,
        prefix: str = "mlc:",
        timeout: float = 0.5,
        probe_seconds: float = 1.0,
    ) -> None:
        self.prefix = prefix
        self.probe_seconds = probe_seconds
        self._down_until = 0.0
        self._down = False
        self._recover_hooks: list[Callable[[], Awaitable[None]]] = []
        # Called with (operation, seconds, failed) after every call that reached Redis: tracing's Redis
        # spans. None (the default, and with tracing off) costs one attribute check per call.
        self.on_call: Callable[[str, float, bool], None] | None = None
        self.client: RedisClient | None = connect(url, timeout) if url else None
        # The scripts every request runs go over one pipelined connection (platform/redis_wire.py).
        self.channel = ScriptChannel(url, timeout) if url and ScriptChannel.supports(url) else None
        REDIS_UP.set(1 if url else 0)

    @property
    def configured(self) -> bool:
        return self.client is not None

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    @property
    def available(self) -> bool:
        """Worth trying now: configured, and either up or due for a probe."""
        return self.client is not None and (not self._down or time.monotonic() >= self._down_until)

    def script(self, source: str) -> ScriptCall | None:
        """`source` registered for `run`: on the pipelined channel for a plain redis:// URL, else on
        redis-py's client (cluster, TLS, unix socket). None without Redis."""
        if self.client is None:
            return None
        channel = self.channel
        if channel is None:
            return self.client.register_script(source)
        lua = LuaScript(source)

        async def call(*, keys: Sequence[str | int], args: Sequence[str | int | float]) -> Any:
            return await channel.run(lua, keys, args)

        return call

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def on_recover(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` when Redis answers again after an outage (e.g. mark stale boards for rebuild)."""
        self._recover_hooks.append(hook)

    async def run(self, operation: str, call: Callable[[RedisClient], Awaitable[T]]) -> T:
        """Run `call` on the client; RedisUnavailable (and a fallback count) when that is not possible."""
        client = self.client
        if client is None:
            raise RedisUnavailable(operation)  # single-instance mode by design: not a fallback
        if not self.available:
            REDIS_FALLBACKS.labels(operation).inc()
            raise RedisUnavailable(operation)
        on_call = self.on_call
        if on_call is None:
            return await self._call(client, operation, call)
        started = time.perf_counter()
        failed = True
        try:
            result = await self._call(client, operation, call)
            failed = False
            return result
        finally:
            on_call(operation, time.perf_counter() - started, failed)

    async def _call(
        self, client: RedisClient, operation: str, call: Callable[[RedisClient], Awaitable[T]]
    ) -> T:
        try:
            if self._down:
                # A probe: confirm Redis answers and run the recovery hooks before the real call,
                # so the call already sees what the hooks repaired. On a cluster, every primary.
                await self._ping(client)
                await self._mark_up()
            return await call(client)
        except Exception as exc:  # see the module docstring: every client failure degrades
            was_up = not self._down
            self.mark_down(exc)
            REDIS_FALLBACKS.labels(operation).inc()
            if was_up and self.channel is not None:
                self.channel.reset()
            if was_up and isinstance(client, Redis):
                # After a Redis restart every pooled connection is dead: drop them all at once, so
                # recovery does not cost one failed request (and one more outage) per connection.
                # (The cluster client drops a failed node's connections itself.)
                with contextlib.suppress(Exception):
                    await client.connection_pool.disconnect()
            raise RedisUnavailable(operation) from exc

    def mark_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self.probe_seconds
        if not self._down:
            self._down = True
            REDIS_UP.set(0)
            REDIS_OUTAGES.inc()
            log.warning("Redis unavailable (%s): limits and boards fall back to this instance", exc)

    async def _mark_up(self) -> None:
        if not self._down:
            return  # several requests probed at once: the first to answer recovered Redis for all
        self._down = False
        REDIS_UP.set(1)
        log.warning("Redis is back: limits and boards are shared again")
        for hook in self._recover_hooks:
            try:
                await hook()
            except Exception:
                log.exception("Redis recovery hook failed")

    @staticmethod
    async def _ping(client: RedisClient) -> bool:
        if isinstance(client, RedisCluster):
            return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
        return bool(await client.ping())

    async def ping(self) -> bool:
        """Health check for readiness probes; never raises."""
        try:
            return await self.run("ping", self._ping)
        except RedisUnavailable:
            return False

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.client is not None:
            await self.client.aclose()
