"""`make run`: a development server with demo data, from nothing but this repository.

Without DATABASE_URL it starts an embedded PostgreSQL (see mlc_graph.tools.embedded); with it, it uses that
server. Either way it migrates, seeds the demo data when the database is empty, prints the GraphiQL
URL with ready-made teacher and student tokens, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import asyncpg

from mlc_graph.platform.auth import Role, issue_token
from mlc_graph.platform.config import ConfigError, Settings
from mlc_graph.platform.migrate import migrate
from mlc_graph.tools.embedded import (
    DEFAULT_DATA_DIR,
    EmbeddedPostgres,
    EmbeddedUnavailableError,
    start_embedded,
)
from mlc_graph.tools.seed import DEMO, is_empty, seed

# The demo logs in as the first teacher and that teacher's first active student.
SELECT_DEMO_TEACHER = "SELECT id, org_id FROM teachers ORDER BY id LIMIT 1"
SELECT_DEMO_STUDENT = (
    "SELECT id FROM students WHERE teacher_id = $1 AND status = 'active' ORDER BY id LIMIT 1"
)

# Prefilled in the GraphiQL links (the page reads &query=), so the first click shows real data.
TEACHER_QUERY = """{
  viewer {
    role
    teacher {
      displayName
      students(first: 5) { totalCount edges { node { displayName lastActiveAt } } }
    }
  }
}
"""
STUDENT_QUERY = """{
  viewer {
    student {
      displayName
      assignments(first: 5, status: ACTIVE) { edges { node { dueDate game { title category { name } } } } }
      scores(first: 5) { edges { node { score stage createdAt game { title } } } }
    }
  }
}
"""


class DemoDataError(RuntimeError):
    """The database has data but no teacher with an active student to log in as."""


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What a developer needs to start exploring: where GraphiQL is and who to be."""

    base_url: str
    org_id: int
    teacher_id: int
    student_id: int
    teacher_token: str
    student_token: str
    seeded: bool

    @property
    def graphiql_url(self) -> str:
        return f"{self.base_url}/graphql"

    def graphiql_link(self, token: str, query: str | None = None) -> str:
        # GraphiQL reads ?token= and sends it as the Bearer header of every request it makes.
        params = {"token": token} if query is None else {"token": token, "query": query}
        return f"{self.graphiql_url}?{urlencode(params)}"

    def banner(self) -> str:
        return "\n".join(
            [
                "",
                "MLC Graph development server",
                f"  GraphiQL:        {self.graphiql_url}",
                f"  as teacher {self.teacher_id}:  {self.graphiql_link(self.teacher_token, TEACHER_QUERY)}",
                f"  as student {self.student_id}:  {self.graphiql_link(self.student_token, STUDENT_QUERY)}",
                "",
                f"  teacher token:   {self.teacher_token}",
                f"  student token:   {self.student_token}",
                "",
                "  curl example:",
                f"    curl -s {self.graphiql_url} -H 'Authorization: Bearer {self.teacher_token}' \\",
                "      -H 'Content-Type: application/json' -d '{\"query\": \"{ viewer { role } }\"}'",
                "",
            ]
        )


def _browser_host(host: str) -> str:
    # A wildcard bind address is not something a browser can open.
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104


async def prepare(settings: Settings, *, progress: bool = True) -> DemoInfo:
    """Migrate, seed the demo data when the database is empty, and mint tokens for the demo users."""
    conn = await asyncpg.connect(settings.direct_url)
    try:
        await migrate(conn)
        seeded = False
        if await is_empty(conn):
            await seed(conn, DEMO, progress=progress)
            seeded = True
        teacher = await conn.fetchrow(SELECT_DEMO_TEACHER)
        if teacher is None:
            raise DemoDataError("the database has data but no teacher; run `mlc-graph seed --reset`")
        student_id = await conn.fetchval(SELECT_DEMO_STUDENT, teacher["id"])
        if student_id is None:
            raise DemoDataError(
                f"teacher {teacher['id']} has no active student; run `mlc-graph seed --reset`"
            )
    finally:
        await conn.close()
    teacher_id: int = teacher["id"]
    org_id: int = teacher["org_id"]
    return DemoInfo(
        base_url=f"http://{_browser_host(settings.host)}:{settings.port}",
        org_id=org_id,
        teacher_id=teacher_id,
        student_id=int(student_id),
        teacher_token=issue_token(settings.jwt_secret, Role.TEACHER, teacher_id, org_id),
        student_token=issue_token(settings.jwt_secret, Role.STUDENT, int(student_id), org_id),
        seeded=seeded,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlc_graph.tools.devserver", description=__doc__)
    parser.add_argument("--prepare-only", action="store_true", help="migrate, seed and print; do not serve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedPostgres | None = None
    if not os.environ.get("DATABASE_URL"):
        try:
            embedded = start_embedded(DEFAULT_DATA_DIR)
        except EmbeddedUnavailableError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        url_file = embedded.publish_url()
        print(
            f"embedded PostgreSQL running, data in {embedded.data_dir} (DATABASE_URL selects another server)"
        )
        print(f'  for the command line, while this runs: export DATABASE_URL="$(cat {url_file})"')
        settings = replace(settings, database_url=embedded.url)
    else:
        print("using the PostgreSQL server in DATABASE_URL")
    try:
        try:
            info = asyncio.run(prepare(settings, progress=sys.stderr.isatty()))
        except (OSError, asyncpg.PostgresError, DemoDataError) as exc:
            # The usual first-run problems (server down, database missing, foreign data): say so plainly.
            print(f"cannot prepare the database: {exc}", file=sys.stderr)
            return 1
        if info.seeded:
            print(
                f"seeded the demo data ({DEMO.organizations} organization, {DEMO.teachers} teachers, "
                f"{DEMO.students} students, {DEMO.games} games, {DEMO.scores:,} scores)"
            )
        if args.prepare_only:
            print(info.banner(), flush=True)
            return 0
        # Imported here: the server pulls in the whole GraphQL layer, which --prepare-only does not need.
        from mlc_graph.http.server import serve

        # The banner (tokens, links) once the port is bound: a busy port prints its error instead.
        code: int = serve(
            settings,
            host=settings.host,
            port=settings.port,
            workers=1,
            on_listening=lambda: print(info.banner(), flush=True),
        )
        return code
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    raise SystemExit(main())
