"""Settings read once from the environment by the app factory (never at import)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEV_JWT_SECRET = "mlc-dev-secret-not-for-production"  # noqa: S105 - refused when MLC_ENV=production


class ConfigError(ValueError):
    """A setting is missing or malformed; the server refuses to start."""


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def _refuse(name: str, raw: str, allowed: str) -> ConfigError:
    # One line an operator can act on: the variable, the value it had, and what it may be.
    return ConfigError(f"{name}={raw!r} is not allowed: {allowed}")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


def _range_text(low: float, high: float | None) -> str:
    return f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0, high: int | None = None) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    allowed = f"an integer {_range_text(low, high)}"
    try:
        value = int(raw)
    except ValueError:
        raise _refuse(name, raw, allowed) from None
    if value < low or (high is not None and value > high):
        raise _refuse(name, raw, allowed)
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, low: float = 0.0, positive: bool = False
) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    allowed = "a number above 0" if positive else f"a number {_range_text(low, None)}"
    try:
        value = float(raw)
    except ValueError:
        raise _refuse(name, raw, allowed) from None
    # `value != value` catches nan, which compares false with every bound.
    if value != value or value in (float("inf"), float("-inf")) or value < low or (positive and value <= 0):
        raise _refuse(name, raw, allowed)
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    word = raw.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _refuse(name, raw, f"one of {', '.join(TRUE_WORDS)} (on) or {', '.join(FALSE_WORDS)} (off)")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() not in allowed:
        raise _refuse(name, raw, f"one of {', '.join(allowed)}")
    return raw.lower()


def _url(name: str, schemes: tuple[str, ...], raw: str) -> str:
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        raise _refuse(name, raw, f"a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return raw


def _networks(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "")
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise _refuse(name, part, "comma-separated addresses or networks (10.0.0.0/8, ::1)") from None
    return raw


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Browser origins as a browser sends them: scheme://host[:port], no path; `*` alone allows any."""
    origins: list[str] = []
    for part in (p.strip() for p in env.get(name, "").split(",")):
        if not part:
            continue
        if part == "*":
            origins.append(part)
            continue
        parsed = urlsplit(part)
        try:
            port_ok = parsed.port is None or parsed.port > 0
        except ValueError:
            port_ok = False
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or parsed.path not in ("", "/")
            or parsed.query
            or parsed.fragment
            or not port_ok
        ):
            raise _refuse(name, part, "comma-separated origins like https://app.example.com or *")
        origins.append(f"{parsed.scheme}://{parsed.netloc.lower()}")
    return tuple(origins)


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
    # Writes wait for row locks other writes hold (a class submitting at once): longer than a read may.
    write_statement_timeout_ms: int = 15000
    # 0 behind PgBouncer in transaction mode before 1.21 (docs/OPERATIONS.md): no named prepared statements.
    statement_cache_size: int = 100


@dataclass(frozen=True, slots=True)
class IdentityProviderSettings:
    """Where an identity provider publishes its keys, what its tokens must say, and which claims carry
    who the caller is (dotted names reach into nested claims, e.g. `mlc.org`)."""

    jwks_url: str
    issuer: str
    audience: str
    refresh_seconds: float = 60.0
    max_age_seconds: float = 3600.0
    role_claim: str = "role"
    org_claim: str = "org"
    student_claim: str = "sub"
    teacher_claim: str = "sub"


def _identity_provider(env: Mapping[str, str]) -> IdentityProviderSettings | None:
    url = (env.get("MLC_JWKS_URL") or "").strip()
    if not url:
        return None
    issuer = (env.get("MLC_JWT_ISSUER") or "").strip()
    audience = (env.get("MLC_JWT_AUDIENCE") or "").strip()
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"MLC_JWKS_URL must be an http(s) URL, got {url!r}")
    if not issuer or not audience:
        raise ConfigError("MLC_JWKS_URL needs MLC_JWT_ISSUER and MLC_JWT_AUDIENCE (both are checked)")
    return IdentityProviderSettings(
        jwks_url=url,
        issuer=issuer,
        audience=audience,
        refresh_seconds=_float(env, "MLC_JWKS_REFRESH_SECONDS", 60.0),
        max_age_seconds=_float(env, "MLC_JWKS_MAX_AGE_SECONDS", 3600.0),
        role_claim=env.get("MLC_JWT_ROLE_CLAIM") or "role",
        org_claim=env.get("MLC_JWT_ORG_CLAIM") or "org",
        student_claim=env.get("MLC_JWT_STUDENT_CLAIM") or "sub",
        teacher_claim=env.get("MLC_JWT_TEACHER_CLAIM") or "sub",
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the server; see README 'Configuration'."""

    env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    database_read_urls: tuple[str, ...] = ()
    # PostgreSQL itself, bypassing PgBouncer, for what holds session state (migrate's advisory lock).
    direct_database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    # Single sign-on (docs/HTTP.md "Authentication"): RS256/ES256 tokens of a school's identity provider.
    identity_provider: IdentityProviderSettings | None = None
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
    # How long an instance trusts its cached copy of an organization's tier: the bound on how late a
    # tier change made in the database takes effect on every instance.
    tier_cache_seconds: float = 60.0
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
    # Issue 12: seconds between rounds of the partition upkeep task (0: off; start-up and maintain remain).
    partition_upkeep_seconds: float = 3600.0
    # Browser pages on other origins that may call the API (CORS) and open subscription sockets.
    allowed_origins: tuple[str, ...] = ()
    # Beacons (web vitals) one client address may send per minute; nobody signs in to send them.
    web_vitals_per_minute: int = 600
    # Load balancers whose X-Forwarded-For is believed when telling clients apart (networks).
    trusted_proxies: str = ""
    # Offline phones (issue 15): how long sync history is kept (older tokens must refetch) and how far
    # back a replayed play may say it was played.
    sync_retention_days: int = 30
    offline_replay_days: int = 7

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def direct_url(self) -> str:
        """Where migrate, maintain, persist and the start-up partition check connect: never a pooler."""
        return self.direct_database_url or self.database_url

    @property
    def direct_url_variable(self) -> str:
        """The environment variable `direct_url` comes from, for messages about it."""
        return "MLC_DIRECT_DATABASE_URL" if self.direct_database_url else "DATABASE_URL"

    @property
    def idempotency_days(self) -> int:
        """Days a score's idempotency claim is kept: a retry with its key within them is a retry."""
        # The API states no retry window. Phones queue plays and replay them through sync; one offline for
        # longer than MLC_SYNC_RETENTION_DAYS has to refetch everything (SYNC_TOKEN_EXPIRED), so that is
        # as far back as the server keeps a client's past, and far longer than a network retry of
        # submitScore takes. Never shorter than MLC_OFFLINE_REPLAY_DAYS: submitScores accepts plays that
        # old, and a retry of one whose claim was gone would record the play twice.
        return max(self.sync_retention_days, self.offline_replay_days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting; the first bad one raises ConfigError naming it (one line)."""
        env = os.environ if env is None else env
        mode = _choice(env, "MLC_ENV", ("development", "production"), "development")
        secret = env.get("MLC_JWT_SECRET", "")
        if mode == "production" and (not secret or secret == DEV_JWT_SECRET or len(secret) < 32):
            raise ConfigError("MLC_ENV=production needs MLC_JWT_SECRET of at least 32 characters")
        read_urls = tuple(
            _url("DATABASE_READ_URL", DATABASE_SCHEMES, u.strip())
            for u in env.get("DATABASE_READ_URL", "").split(",")
            if u.strip()
        )
        database_url = _raw(env, "DATABASE_URL")
        direct_url = _raw(env, "MLC_DIRECT_DATABASE_URL")
        redis_url = _raw(env, "REDIS_URL")
        pool = PoolSettings(
            min_size=_int(env, "MLC_DB_POOL_MIN", 2, low=0),
            max_size=_int(env, "MLC_DB_POOL_MAX", 20, low=1),
            max_inactive_lifetime=_float(env, "MLC_DB_POOL_IDLE_SECONDS", 30.0),
            acquire_timeout=_float(env, "MLC_DB_ACQUIRE_TIMEOUT", 5.0, positive=True),
            max_queries=_int(env, "MLC_DB_MAX_QUERIES", 7500, low=1),
            read_statement_timeout_ms=_int(env, "MLC_READ_TIMEOUT_MS", 5000, low=1),
            report_statement_timeout_ms=_int(env, "MLC_REPORT_TIMEOUT_MS", 30000, low=1),
            write_statement_timeout_ms=_int(env, "MLC_WRITE_TIMEOUT_MS", 15000, low=1),
            statement_cache_size=_int(env, "MLC_DB_STATEMENT_CACHE_SIZE", 100, low=0),
        )
        if pool.min_size > pool.max_size:
            raise _refuse("MLC_DB_POOL_MIN", str(pool.min_size), f"at most MLC_DB_POOL_MAX ({pool.max_size})")
        return cls(
            env=mode,
            host=_raw(env, "HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8000, low=1, high=65535),
            database_url=(
                _url("DATABASE_URL", DATABASE_SCHEMES, database_url) if database_url else DEFAULT_DATABASE_URL
            ),
            database_read_urls=read_urls,
            direct_database_url=(
                _url("MLC_DIRECT_DATABASE_URL", DATABASE_SCHEMES, direct_url) if direct_url else None
            ),
            redis_url=_url("REDIS_URL", REDIS_SCHEMES, redis_url) if redis_url else None,
            jwt_secret=secret or DEV_JWT_SECRET,
            identity_provider=_identity_provider(env),
            pool=pool,
            cost_budget=_int(env, "MLC_COST_BUDGET", 5000, low=1),
            max_depth=_int(env, "MLC_MAX_DEPTH", 15, low=1),
            max_aliases=_int(env, "MLC_MAX_ALIASES", 30, low=0),
            max_tokens=_int(env, "MLC_MAX_TOKENS", 5000, low=1),
            max_document_chars=_int(env, "MLC_MAX_DOCUMENT_CHARS", 50_000, low=1),
            max_body_bytes=_int(env, "MLC_MAX_BODY_BYTES", 1_000_000, low=1),
            max_directives_per_field=_int(env, "MLC_MAX_DIRECTIVES_PER_FIELD", 5, low=0),
            max_repeated_fields=_int(env, "MLC_MAX_REPEATED_FIELDS", 10, low=1),
            batching_enabled=_bool(env, "MLC_BATCHING", False),
            max_batch_operations=_int(env, "MLC_MAX_BATCH_OPERATIONS", 10, low=1),
            document_cache_size=_int(env, "MLC_DOCUMENT_CACHE_SIZE", 1024, low=1),
            slow_query_ms=_float(env, "MLC_SLOW_QUERY_MS", 1000.0),
            session_idle_seconds=_int(env, "MLC_SESSION_IDLE_SECONDS", 900, low=1),
            tier_overrides=env.get("MLC_TIER_OVERRIDES", ""),
            tier_cache_seconds=_float(env, "MLC_TIER_CACHE_SECONDS", 60.0),
            redis_prefix=env.get("MLC_REDIS_PREFIX") or "mlc:",
            max_subscriptions_per_connection=_int(env, "MLC_MAX_SUBSCRIPTIONS", 10, low=1),
            leaderboard_coalesce_ms=_int(env, "MLC_LEADERBOARD_COALESCE_MS", 250, low=0),
            trusted_documents_only=_bool(env, "MLC_TRUSTED_DOCUMENTS", False),
            metrics_token=env.get("MLC_METRICS_TOKEN") or None,
            debug_sql_count=_bool(env, "MLC_DEBUG_SQL_COUNT", mode != "production"),
            workers=_int(env, "MLC_WORKERS", 0, low=0, high=1024),
            shutdown_timeout=_float(env, "MLC_SHUTDOWN_TIMEOUT", 10.0),
            access_log=_bool(env, "MLC_ACCESS_LOG", False),
            metrics_allow=_networks(env, "MLC_METRICS_ALLOW"),
            sql_comment=_choice(env, "MLC_SQL_COMMENT", ("operation", "full", "off"), "operation"),
            read_your_writes_seconds=_float(env, "MLC_READ_YOUR_WRITES_SECONDS", 30.0),
            replica_poll_seconds=_float(env, "MLC_REPLICA_POLL_SECONDS", 0.5, positive=True),
            request_log=_bool(env, "MLC_REQUEST_LOG", True),
            log_level=_choice(env, "MLC_LOG_LEVEL", tuple(x.lower() for x in LOG_LEVELS), "info").upper(),
            compression=_bool(env, "MLC_COMPRESSION", True),
            tracing=_bool(env, "MLC_TRACING", False),
            executor=_choice(env, "MLC_EXECUTOR", ("compiled", "graphql-core"), "compiled"),
            partition_upkeep_seconds=_float(env, "MLC_PARTITION_UPKEEP_SECONDS", 3600.0),
            allowed_origins=_origins(env, "MLC_ALLOWED_ORIGINS"),
            web_vitals_per_minute=_int(env, "MLC_WEB_VITALS_PER_MINUTE", 600, low=1),
            trusted_proxies=_networks(env, "MLC_TRUSTED_PROXIES"),
            sync_retention_days=_int(env, "MLC_SYNC_RETENTION_DAYS", 30, low=1),
            offline_replay_days=_int(env, "MLC_OFFLINE_REPLAY_DAYS", 7, low=1),
        )
