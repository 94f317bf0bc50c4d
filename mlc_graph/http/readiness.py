"""What `/readyz` says about the database: ready, busy (every pooled connection in use), or unreachable.

| state         | status | when                                                                      |
| ------------- | ------ | ------------------------------------------------------------------------- |
| `ok`          | 200    | `SELECT 1` ran within the probe time                                      |
| `busy`        | 200    | no connection came free in time, and every one of the pool's maximum is   |
|               |        | checked out: working connections, so the database answers; we are full   |
| `unreachable` | 503    | connecting or the statement failed, or time ran out with room to connect  |

A busy instance stays in rotation on purpose: taking saturated instances out of the load balancer under a
load peak moves their traffic onto the others and cascades; `SERVICE_UNAVAILABLE` on the request that
cannot get a connection (MLC_DB_ACQUIRE_TIMEOUT) already sheds what it must.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# Readiness probe statement: trivially constant, kept beside the only code that runs it.
PING_SQL = "SELECT 1"


@dataclass(frozen=True, slots=True)
class Readiness:
    status: int
    body: dict[str, Any]


def _pool_figures(pool: asyncpg.Pool) -> dict[str, int]:
    size = pool.get_size()
    return {"size": size, "inUse": size - pool.get_idle_size(), "max": pool.get_max_size()}


def _saturated(pool: asyncpg.Pool) -> bool:
    return pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0


async def probe(pool: asyncpg.Pool, within: float) -> Readiness:
    try:
        async with asyncio.timeout(within):
            await pool.fetchval(PING_SQL)
    except TimeoutError:
        if _saturated(pool):
            return Readiness(200, {"status": "ready", "database": "busy", "pool": _pool_figures(pool)})
        log.warning("not ready: the database did not answer within %ss", within)
        return Readiness(503, {"status": "unavailable", "database": "unreachable"})
    except Exception as exc:  # any other failure means "not ready"; a probe must answer, never raise
        log.warning("not ready: %s", exc or type(exc).__name__)
        return Readiness(503, {"status": "unavailable", "database": "unreachable"})
    return Readiness(200, {"status": "ready", "database": "ok", "pool": _pool_figures(pool)})
