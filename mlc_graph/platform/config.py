"""Settings read once from the environment by the app factory (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEV_JWT_SECRET = "mlc-dev-secret-not-for-production"  # noqa: S105 - refused when MLC_ENV=production


class ConfigError(ValueError):
    """A setting is missing or malformed; the server refuses to start."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """asyncpg pool limits (the spec's defaults)."""

    min_size: int = 2
    max_size: int = 20
    max_inactive_lifetime: float = 30.0
    acquire_timeout: float = 5.0
    max_queries: int = 7500
    read_statement_timeout_ms: int = 5000
    report_statement_timeout_ms: int = 30000
    # 0 behind PgBouncer in transaction mode before 1.21 (docs/OPERATIONS.md): no named prepared statements.
    statement_cache_size: int = 100


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the server; see README 'Configuration'."""

    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    database_read_urls: tuple[str, ...] = ()
    redis_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    pool: PoolSettings = field(default_factory=PoolSettings)
    cost_budget: int = 5000
    max_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 5000
    max_document_chars: int = 50_000
    max_body_bytes: int = 1_000_000
    max_directives_per_field: int = 5
    max_repeated_fields: int = 10
    batching_enabled: bool = False
    max_batch_operations: int = 10
    document_cache_size: int = 1024
    slow_query_ms: float = 1000.0
    session_idle_seconds: int = 900
    # Real time (issue 5): JSON tier overrides for support/tests, the Redis key namespace shared by
    # every instance, per-connection subscription cap, and the per-board update coalescing interval.
    tier_overrides: str = ""
    redis_prefix: str = "mlc:"
    max_subscriptions_per_connection: int = 10
    leaderboard_coalesce_ms: int = 250
    trusted_documents_only: bool = False
    metrics_token: str | None = None
    debug_sql_count: bool = True
    # Serving (docs/HTTP.md): processes (0 = 1, or the CPU count in production), the bound on finishing
    # in-flight requests after SIGTERM, and the access log (off: it costs throughput; proxies log anyway).
    workers: int = 0
    shutdown_timeout: float = 10.0
    access_log: bool = False
    # Operations (issue 6, docs/OPERATIONS.md): who may scrape /metrics besides token holders, the SQL
    # comment mode, read-your-writes window and replica probe interval, the JSON request log, compression.
    metrics_allow: str = ""
    sql_comment: str = "operation"
    read_your_writes_seconds: float = 30.0
    replica_poll_seconds: float = 0.5
    request_log: bool = True
    log_level: str = "INFO"
    compression: bool = True
    tracing: bool = False
    # GraphQL execution (issue 7): the compiled executor, or graphql-core for every operation.
    executor: str = "compiled"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        mode = env.get("MLC_ENV", "development").strip().lower() or "development"
        secret = env.get("MLC_JWT_SECRET", "")
        if mode == "production" and (not secret or secret == DEV_JWT_SECRET or len(secret) < 32):
            raise ConfigError("MLC_ENV=production needs MLC_JWT_SECRET of at least 32 characters")
        read_urls = tuple(u.strip() for u in env.get("DATABASE_READ_URL", "").split(",") if u.strip())
        pool = PoolSettings(
            min_size=_int(env, "MLC_DB_POOL_MIN", 2),
            max_size=_int(env, "MLC_DB_POOL_MAX", 20),
            max_inactive_lifetime=_float(env, "MLC_DB_POOL_IDLE_SECONDS", 30.0),
            acquire_timeout=_float(env, "MLC_DB_ACQUIRE_TIMEOUT", 5.0),
            max_queries=_int(env, "MLC_DB_MAX_QUERIES", 7500),
            read_statement_timeout_ms=_int(env, "MLC_READ_TIMEOUT_MS", 5000),
            report_statement_timeout_ms=_int(env, "MLC_REPORT_TIMEOUT_MS", 30000),
            statement_cache_size=_int(env, "MLC_DB_STATEMENT_CACHE_SIZE", 100),
        )
        if pool.min_size > pool.max_size:
            raise ConfigError("MLC_DB_POOL_MIN must not exceed MLC_DB_POOL_MAX")
        return cls(
            env=mode,
            host=env.get("HOST", "127.0.0.1"),
            port=_int(env, "PORT", 8000),
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_read_urls=read_urls,
            redis_url=env.get("REDIS_URL") or None,
            jwt_secret=secret or DEV_JWT_SECRET,
            pool=pool,
            cost_budget=_int(env, "MLC_COST_BUDGET", 5000),
            max_depth=_int(env, "MLC_MAX_DEPTH", 15),
            max_aliases=_int(env, "MLC_MAX_ALIASES", 30),
            max_tokens=_int(env, "MLC_MAX_TOKENS", 5000),
            max_document_chars=_int(env, "MLC_MAX_DOCUMENT_CHARS", 50_000),
            max_body_bytes=_int(env, "MLC_MAX_BODY_BYTES", 1_000_000),
            max_directives_per_field=_int(env, "MLC_MAX_DIRECTIVES_PER_FIELD", 5),
            max_repeated_fields=_int(env, "MLC_MAX_REPEATED_FIELDS", 10),
            batching_enabled=_bool(env, "MLC_BATCHING", False),
            max_batch_operations=_int(env, "MLC_MAX_BATCH_OPERATIONS", 10),
            document_cache_size=_int(env, "MLC_DOCUMENT_CACHE_SIZE", 1024),
            slow_query_ms=_float(env, "MLC_SLOW_QUERY_MS", 1000.0),
            session_idle_seconds=_int(env, "MLC_SESSION_IDLE_SECONDS", 900),
            tier_overrides=env.get("MLC_TIER_OVERRIDES", ""),
            redis_prefix=env.get("MLC_REDIS_PREFIX") or "mlc:",
            max_subscriptions_per_connection=_int(env, "MLC_MAX_SUBSCRIPTIONS", 10),
            leaderboard_coalesce_ms=_int(env, "MLC_LEADERBOARD_COALESCE_MS", 250),
            trusted_documents_only=_bool(env, "MLC_TRUSTED_DOCUMENTS", False),
            metrics_token=env.get("MLC_METRICS_TOKEN") or None,
            debug_sql_count=_bool(env, "MLC_DEBUG_SQL_COUNT", mode != "production"),
            workers=_int(env, "MLC_WORKERS", 0),
            shutdown_timeout=_float(env, "MLC_SHUTDOWN_TIMEOUT", 10.0),
            access_log=_bool(env, "MLC_ACCESS_LOG", False),
            metrics_allow=env.get("MLC_METRICS_ALLOW", ""),
            sql_comment=_choice(env, "MLC_SQL_COMMENT", ("operation", "full", "off"), "operation"),
            read_your_writes_seconds=_float(env, "MLC_READ_YOUR_WRITES_SECONDS", 30.0),
            replica_poll_seconds=_float(env, "MLC_REPLICA_POLL_SECONDS", 0.5),
            request_log=_bool(env, "MLC_REQUEST_LOG", True),
            log_level=(env.get("MLC_LOG_LEVEL") or "INFO").upper(),
            compression=_bool(env, "MLC_COMPRESSION", True),
            tracing=_bool(env, "MLC_TRACING", False),
            executor=_choice(env, "MLC_EXECUTOR", ("compiled", "graphql-core"), "compiled"),
        )
