"""Typed keys of the app and request state (aiohttp's "no singletons"), in one place without import cycles."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from mlc_graph.execution.pipeline import Pipeline
from mlc_graph.guards.persisted import PersistedQueries
from mlc_graph.guards.quotas import Quotas
from mlc_graph.guards.tiers import TierResolver
from mlc_graph.platform.auth import TokenVerifier
from mlc_graph.platform.config import Settings
from mlc_graph.platform.events import EventBus
from mlc_graph.realtime.services import Realtime
from resolvers.services import Services

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
EVENTS = web.AppKey("events", EventBus)
# Built at start-up, once the pool and Redis exist (mlc_graph.app): the documents, stages and executors.
PIPELINE = web.AppKey("pipeline", Pipeline)
TOKENS = web.AppKey("tokens", TokenVerifier)
TIERS = web.AppKey("tiers", TierResolver)
QUOTAS = web.AppKey("quotas", Quotas)
REALTIME = web.AppKey("realtime", Realtime)
PERSISTED = web.AppKey("persisted_queries", PersistedQueries)
# What resolvers may use of the real-time services: handed to every Context as is.
SERVICES = web.AppKey("services", Services)
REQUEST_ID = web.RequestKey("request_id", str)
# GET /graphql with Upgrade: websocket goes to this handler when the WebSocket feature registered it
# (mlc_graph.ws.subscriptions): the HTTP view dispatches there without importing the feature.
WEBSOCKET: web.AppKey[Handler] = web.AppKey("websocket_handler")
