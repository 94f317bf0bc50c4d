"""`mlc-graph` command line: serve, migrate, seed, token, export-schema and the operational commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import asyncpg

from loaders.score_writes import delete_expired_claims
from mlc_graph.domain.tiers import TierTable
from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.change_partitions import drop_expired_change_partitions, ensure_change_partitions
from mlc_graph.platform.config import ConfigError, Settings
from mlc_graph.platform.errors import DatabaseUnavailableError
from mlc_graph.platform.migrate import ensure_score_partitions, migrate

# What "the database is not there" looks like to a command: a refused or unreachable socket, a timeout, a
# server still starting, a database that does not exist, a refused login. Each gets one line, not a
# traceback (issue 12 item 23).
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    DatabaseUnavailableError,
)
# The commands that connect to Settings.direct_url (PostgreSQL itself, bypassing a PgBouncer in
# DATABASE_URL); every other one connects to DATABASE_URL. The refusal must name the one that was tried.
DIRECT_COMMANDS = frozenset({"migrate", "maintain", "persist", "import-students"})
EMBEDDED_HINT = 'for the one `make run` serves: export DATABASE_URL="$(cat .mlc/database-url)"'
DIRECT_HINT = "this command connects there instead of DATABASE_URL"


def database_address(url: str) -> str:
    """host:port/database of a DSN, without its user or password (a socket directory for the embedded one)."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["the local socket"])[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def database_down(settings: Settings, command: str, exc: BaseException) -> str:
    """The one line for a command whose database is not there: the address tried and its variable."""
    if command in DIRECT_COMMANDS:
        url, variable = settings.direct_url, settings.direct_url_variable
    else:
        url, variable = settings.database_url, "DATABASE_URL"
    hint = EMBEDDED_HINT if variable == "DATABASE_URL" else DIRECT_HINT
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"cannot reach the database at {database_address(url)} ({reason}): start "
        f"PostgreSQL, or set {variable} to a running server ({hint})"
    )


async def _migrate(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.direct_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def _maintain(settings: Settings, ahead: int) -> tuple[list[str], list[str], int]:
    """(partitions created, change-log partitions dropped as older than MLC_SYNC_RETENTION_DAYS,
    score idempotency claims deleted as older than Settings.idempotency_days)."""
    conn = await asyncpg.connect(settings.direct_url)
    try:
        created = await ensure_score_partitions(conn, ahead=ahead)
        created += await ensure_change_partitions(conn, ahead=ahead)
        dropped = await drop_expired_change_partitions(conn, settings.sync_retention_days)
        deleted = await delete_expired_claims(conn, settings.idempotency_days)
        return created, dropped, deleted
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = asyncio.run(_migrate(settings))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    created, dropped, deleted = asyncio.run(_maintain(settings, args.ahead))
    print("created partitions: " + ", ".join(created) if created else "all partitions present")
    if dropped:
        print("dropped expired change-log partitions: " + ", ".join(dropped))
    if deleted:
        print(f"deleted expired score idempotency claims: {deleted}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    role = Role(args.role.upper())
    print(
        issue_token(settings.jwt_secret, role, args.id, args.org, ttl_seconds=args.ttl, session_id=args.sid)
    )
    return 0


def cmd_export_schema(args: argparse.Namespace, settings: Settings) -> int:
    from resolvers.schema import schema_sdl

    sys.stdout.write(schema_sdl())
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from mlc_graph.http.server import serve

    return serve(settings, host=args.host, port=args.port, workers=args.workers)


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    from mlc_graph.tools.seed import seed_command

    return seed_command(settings, scale=args.scale, reset=args.reset)


def cmd_persist(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from mlc_graph.guards.persisted import persist_files

    try:
        files = [(path, Path(path).read_text(encoding="utf-8")) for path in args.files]
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {exc.filename if isinstance(exc, OSError) else 'a file'}: {exc}", file=sys.stderr)
        return 2
    for sha256, name, path in asyncio.run(persist_files(settings, files)):
        print(f"{sha256}  {name or '(anonymous)'}  {path}")
    return 0


def cmd_import_students(args: argparse.Namespace, settings: Settings) -> int:
    from mlc_graph.tools.import_students import import_students_command

    return import_students_command(settings, args.file, args.teacher)


def cmd_loadtest(args: argparse.Namespace, settings: Settings) -> int:
    from mlc_graph.tools.loadtest import run

    return run(args, settings)


def cmd_tiers(args: argparse.Namespace, settings: Settings) -> int:
    from mlc_graph.domain.tiers import TierTable, markdown_table

    print(markdown_table(TierTable.from_overrides(settings.tier_overrides), settings.cost_budget))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlc-graph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve GraphQL over HTTP and WebSocket")
    serve.add_argument("--host", default=None, help="bind address (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default PORT or 8000)")
    serve.add_argument(
        "--workers", type=int, default=None, help="processes (default 1; CPU count in production)"
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(func=cmd_migrate)

    maintain = sub.add_parser(
        "maintain", help="create future monthly partitions, drop expired sync history and idempotency claims"
    )
    maintain.add_argument("--ahead", type=int, default=3, help="months ahead to create (default 3)")
    maintain.set_defaults(func=cmd_maintain)

    seed = sub.add_parser("seed", help="load deterministic demo or district-scale data")
    seed.add_argument("--scale", choices=["demo", "district"], default="demo")
    seed.add_argument("--reset", action="store_true", help="empty the tables first")
    seed.set_defaults(func=cmd_seed)

    token = sub.add_parser("token", help="mint a JWT for GraphiQL or curl")
    token.add_argument("--role", choices=["student", "teacher", "admin"], required=True)
    token.add_argument("--id", type=int, required=True, help="student id (student) or teacher id")
    token.add_argument("--org", type=int, default=1, help="organization id (default 1)")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.add_argument("--sid", default=None, help="session id (default: a new one)")
    token.set_defaults(func=cmd_token)

    persist = sub.add_parser("persist", help="register trusted documents (.graphql files); prints hashes")
    persist.add_argument("files", nargs="+", metavar="FILE", help="a .graphql file of operations")
    persist.set_defaults(func=cmd_persist)

    imports = sub.add_parser("import-students", help="import a roster CSV into a teacher's class")
    imports.add_argument("file", help="CSV with first_name, last_name, username and optionally email")
    imports.add_argument("--teacher", type=int, required=True, help="teacher id of the class")
    imports.set_defaults(func=cmd_import_students)

    load = sub.add_parser(
        "loadtest", help="Locust or k6 load test in the spec's stages, judged against the SLOs"
    )
    load.add_argument("--host", default=None, help="a running server (default: spawn one on a free port)")
    load.add_argument(
        "--database-url", default=None, help="database for ids and tokens (default DATABASE_URL)"
    )
    load.add_argument("--scale", type=float, default=1.0, help="multiply stage durations (CI smoke: 0.02)")
    load.add_argument("--peak", type=int, default=200, help="peak users (default 200; first plateau is half)")
    load.add_argument("--workers", type=int, default=1, help="server processes when spawning (default 1)")
    load.add_argument("--out", default="bench/out/loadtest", help="directory for report.html and summary.md")
    load.add_argument(
        "--runner",
        choices=["locust", "k6"],
        default="locust",
        help="locust (bench/locustfile.py) or k6 (bench/k6/loadtest.js, the spec's tool)",
    )
    load.set_defaults(func=cmd_loadtest)

    sub.add_parser("tiers", help="print the tier quotas in effect (MLC_TIER_OVERRIDES applied)").set_defaults(
        func=cmd_tiers
    )

    sub.add_parser("export-schema", help="print the schema SDL (schema.graphql)").set_defaults(
        func=cmd_export_schema
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        # Checked before any command runs, like every other setting: one line, not a traceback later.
        TierTable.from_overrides(settings.tier_overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args, settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except DATABASE_DOWN as exc:
        print(database_down(settings, args.command, exc), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
