"""Typed keys of the app and request state (aiohttp's "no singletons"), in one place without import cycles."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from mlc_graph.execution.pipeline import Pipeline
from mlc_graph.platform.auth import TokenVerifier
from mlc_graph.platform.config import Settings
from mlc_graph.platform.events import EventBus

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
EVENTS = web.AppKey("events", EventBus)
PIPELINE = web.AppKey("pipeline", Pipeline)
TOKENS = web.AppKey("tokens", TokenVerifier)
# Named services for resolvers (Redis, leaderboards, pub/sub...): handed to every Context as is.
SERVICES: web.AppKey[dict[str, Any]] = web.AppKey("services")
REQUEST_ID = web.RequestKey("request_id", str)
