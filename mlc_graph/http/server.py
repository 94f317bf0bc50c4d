"""`mlc-graph serve`: run the app on uvloop, in one process or N workers sharing the port (SO_REUSEPORT).

SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish within `MLC_SHUTDOWN_TIMEOUT`
seconds, then closes the pools. With several workers the parent only supervises: it forwards the signal,
waits for the workers, and restarts one that dies while serving (giving up when they keep crashing).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from aiohttp import web

from mlc_graph.observability.logs import configure_logging
from mlc_graph.observability.metrics import multiprocess_directory, worker_exited
from mlc_graph.platform.config import Settings

log = logging.getLogger(__name__)
# The composition root every worker builds its app with (a module-level factory of one Settings).
APP_FACTORY = "mlc_graph.app:create_app"

# Issue 7: after start-up everything allocated so far lives forever; freezing it and collecting the young
# generation less often cut collector time on the hot path (+39 % on W1).
GC_GEN0_THRESHOLD = 50_000
# A worker that dies this soon after starting is failing to start, not crashing under load.
CRASH_WINDOW_SECONDS = 5.0
MAX_QUICK_CRASHES = 5


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # optional: pure asyncio works, only slower
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU limit in cores (`docker run --cpus`, a Kubernetes limit), None when unlimited.

    cgroup v2: `cpu.max` holds "<quota> <period>" or "max <period>"; cgroup v1: `cpu/cpu.cfs_quota_us`
    (-1 = unlimited) over `cpu/cpu.cfs_period_us`.
    """
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        if quota.strip() == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cpu_count(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: the CPU affinity, capped by the cgroup quota (at least 1).

    os.cpu_count() sees the host's cores, so `--cpus=0.5` on a 2-core host started 2 workers.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def default_workers(settings: Settings) -> int:
    if settings.workers > 0:
        return settings.workers
    return cpu_count() if settings.production else 1


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def serve_app(
    app: web.Application,
    settings: Settings,
    host: str,
    port: int,
    stop: asyncio.Event,
    reuse_port: bool = False,
    tune_gc: bool = True,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """Serve `app` until `stop` is set, then shut down gracefully; returns the exit code.

    `on_listening` runs once the socket is bound (the dev server's banner), so a busy port is reported
    instead of it, never after it."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        await runner.cleanup()
        return 1
    if on_listening is not None:
        on_listening()
    if tune_gc:
        _tune_gc()
    addresses = ", ".join(f"{a[0]}:{a[1]}" for a in runner.addresses)
    log.info("serving on http://%s (pid %s)", addresses, os.getpid())
    await stop.wait()
    log.info("shutting down (pid %s)", os.getpid())
    # Stops listening, waits up to shutdown_timeout for in-flight requests, then runs cleanup_ctx (pools).
    await runner.cleanup()
    return 0


async def _serve(
    settings: Settings, host: str, port: int, reuse_port: bool, on_listening: Callable[[], None] | None = None
) -> int:
    # Imported where the app is built: the supervising parent never loads the GraphQL layer (it would
    # only cost start-up time and memory in a process that serves nothing). By import path: the app
    # factory sits above this module (mlc_graph.app composes it), so this module cannot import it.
    module, _, name = APP_FACTORY.partition(":")
    create_app = getattr(importlib.import_module(module), name)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(settings)
    return await serve_app(app, settings, host, port, stop, reuse_port, on_listening=on_listening)


def run_worker(
    settings: Settings,
    host: str,
    port: int,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """Serve in this process until SIGTERM or SIGINT."""
    _configure_logging()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(settings, host, port, reuse_port, on_listening))


def _worker_entry(settings: Settings, host: str, port: int) -> None:
    raise SystemExit(run_worker(settings, host, port, reuse_port=True))


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        # JSON lines (mlc_graph.observability.logs): one object per line, the request log's format too.
        configure_logging(os.environ.get("MLC_LOG_LEVEL") or "INFO")


class _Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, count: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.count = count
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}
        self.stop = threading.Event()
        self.quick_crashes = 0

    def _start(self, slot: int) -> None:
        process = self.context.Process(
            target=_worker_entry, args=(self.settings, self.host, self.port), name=f"mlc-graph-{slot}"
        )
        process.start()
        self.workers[slot] = (process, time.monotonic())

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for slot in range(self.count):
            self._start(slot)
        log.info("supervising %d workers on %s:%s", self.count, self.host, self.port)
        failed = False
        while not self.stop.is_set():
            sentinels = {process.sentinel: slot for slot, (process, _) in self.workers.items()}
            for ready in wait(list(sentinels), timeout=0.5):
                slot = sentinels[ready]  # type: ignore[index]
                process, started = self.workers[slot]
                process.join()
                worker_exited(process.pid)
                if self.stop.is_set():
                    break
                if time.monotonic() - started < CRASH_WINDOW_SECONDS:
                    self.quick_crashes += 1
                log.warning("worker %s exited with %s; restarting", process.pid, process.exitcode)
                if self.quick_crashes >= MAX_QUICK_CRASHES:
                    log.error("workers keep failing to start; giving up")
                    failed = True
                    self.stop.set()
                    break
                self._start(slot)
        self._stop_all()
        return 1 if failed else 0

    def _stop_all(self) -> None:
        for process, _ in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + 5.0
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    on_listening: Callable[[], None] | None = None,
) -> int:
    """Serve until told to stop; returns the process exit code. `on_listening` (one process only) runs
    once the port is bound."""
    _configure_logging()
    host = host or settings.host
    port = settings.port if port is None else port
    count = workers if workers is not None and workers > 0 else default_workers(settings)
    if count <= 1:
        return run_worker(settings, host, port, on_listening=on_listening)
    # Workers share their metric values through a directory, so any worker's /metrics reports them all.
    with multiprocess_directory():
        return _Supervisor(settings, host, port, count).run()
