"""The raw-SQL floor: the W1-W4 answers from the loaders' own SQL, straight to orjson, no GraphQL.

It is the yardstick the GraphQL server is measured against (issue 7): the same statements (the SQL
constants of `loaders/`), the same JSON shape and values, the same token check and tenant rules, and
nothing else: no parsing, no validation, no resolver tree. Statements run one after another on one
pooled connection (the pool is `mlc_graph.platform.db.create_pool`, so both sides share its no-op reset), and
each answer says how many it ran in the `X-SQL-Statements` header.

Run it as its own process: `python -m bench.floor --port 8001` (DATABASE_URL, MLC_JWT_SECRET as for
the server). Each route takes a JSON object of the workload's variables, e.g. POST /w1 {"id": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from asyncpg.pool import PoolConnectionProxy

from loaders.assignments import SELECT_ASSIGNMENT_PAGES_BY_STATUS
from loaders.games import (
    LIBRARY_STATEMENTS,
    SELECT_GAMES_BY_IDS,
)
from loaders.leaderboards import SELECT_RANK_GLOBAL, SELECT_TOP_GLOBAL
from loaders.students import (
    COUNT_STUDENTS_BY_TEACHERS,
    SELECT_STUDENT_PAGES_BY_TEACHERS,
    SELECT_STUDENTS_BY_IDS,
)
from loaders.teachers import SELECT_TEACHERS_BY_IDS
from mlc_graph.http.server import GC_GEN0_THRESHOLD
from mlc_graph.platform.auth import Principal, Role, bearer_token, decode_token
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import create_pool
from mlc_graph.platform.errors import ApiError, AuthError
from resolvers.leaderboards import pseudonym
from resolvers.relay import decode_cursor, encode_cursor, expect_global_id
from resolvers.relay import encode_global_id as _gid

STATEMENTS_HEADER = "X-SQL-Statements"
ASSIGNMENTS_FIRST = 10
LEADERBOARD_FIRST = 50
LIBRARY_FIRST = 50
# The library filter shape W3 uses: category only (see loaders.games.LIBRARY_STATEMENTS).
_CATEGORY_ONLY = (True, False, False)

POOL_KEY = web.AppKey("pool", asyncpg.Pool)
SECRET_KEY = web.AppKey("secret", str)

Json = dict[str, Any]


class Sql:
    """One request's connection, counting the statements it runs."""

    __slots__ = ("conn", "statements")

    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy[Any]) -> None:
        self.conn = conn
        self.statements = 0

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        return await self.conn.fetch(sql, *args)


def _pk(value: Any, type_name: str) -> int | None:
    """An id of another type, or a malformed one, reads as not found (as it does through GraphQL)."""
    if not isinstance(value, str):
        return None
    try:
        return expect_global_id(value, type_name)
    except ApiError:
        return None


def display_name(secret: str, viewer: Principal, row: asyncpg.Record) -> str:
    """First name and initial inside the viewer's organization, the server's pseudonym outside it."""
    if viewer.can_see_org(row["org_id"]):
        return f"{row['first_name']} {row['last_name'][:1]}."
    return pseudonym(secret, row["student_id"])


async def dashboard(sql: Sql, viewer: Principal, variables: Json, secret: str) -> Json:
    """W1: teacher -> students(first) -> assignments(first: 10, status: ACTIVE) -> game -> category."""
    teacher_id = _pk(variables.get("id"), "Teacher")
    if teacher_id is None:
        return {"teacher": None}
    found = await sql.fetch(SELECT_TEACHERS_BY_IDS, [teacher_id])
    if not found or not viewer.can_see_org(found[0]["org_id"]):
        return {"teacher": None}
    teacher = found[0]
    if not viewer.is_staff:  # a student sees their teacher, not the class roster
        return {"teacher": _teacher_json(teacher, 0, [])}
    first = int(variables.get("studentsFirst", 50))
    page = await sql.fetch(SELECT_STUDENT_PAGES_BY_TEACHERS, [teacher_id], first + 1)
    students = page[:first]
    # A class that fits the page is its own count (as in resolvers.teachers); a larger one is counted.
    if len(page) <= first:
        total = len(page)
    else:
        counted = await sql.fetch(COUNT_STUDENTS_BY_TEACHERS, [teacher_id])
        total = counted[0]["n"] if counted else 0

    assignments: dict[int, list[asyncpg.Record]] = defaultdict(list)
    games: dict[int, asyncpg.Record] = {}
    if students:
        rows = await sql.fetch(
            SELECT_ASSIGNMENT_PAGES_BY_STATUS, [s["id"] for s in students], ASSIGNMENTS_FIRST + 1, "active"
        )
        for row in rows:
            bucket = assignments[row["student_id"]]
            if len(bucket) < ASSIGNMENTS_FIRST:
                bucket.append(row)
        game_ids = list(dict.fromkeys(a["game_id"] for page in assignments.values() for a in page))
        if game_ids:
            # An assigned game stays visible to the class even when it is a draft (as in resolvers).
            # The loaders' statement brings each game's category along (category_name).
            games = {g["id"]: g for g in await sql.fetch(SELECT_GAMES_BY_IDS, game_ids)}

    # Each game and category is rendered once and shared by every assignment that names it (orjson
    # writes a shared dict at every place it appears), as any hand-written handler would do.
    category_json = {
        g["category_id"]: {"id": _gid("Category", g["category_id"]), "name": g["category_name"]}
        for g in games.values()
    }
    game_json: dict[int, Json] = {
        gid: {
            "id": _gid("Game", gid),
            "title": g["title"],
            "difficulty": g["difficulty"],
            "thumbnailUrl": g["thumbnail_url"],
            "category": category_json.get(g["category_id"]),
        }
        for gid, g in games.items()
    }

    edges = [
        {
            "node": {
                "id": _gid("Student", s["id"]),
                "firstName": s["first_name"],
                "lastName": s["last_name"],
                "avatarUrl": s["avatar_url"],
                "assignments": {
                    "edges": [
                        {
                            "node": {
                                "id": _gid("Assignment", a["id"]),
                                "status": a["status"].upper(),
                                "dueDate": a["due_date"],
                                "game": game_json.get(a["game_id"]),
                            }
                        }
                        for a in assignments.get(s["id"], ())
                    ]
                },
            }
        }
        for s in students
    ]
    return {"teacher": _teacher_json(teacher, total, edges)}


def _teacher_json(teacher: asyncpg.Record, total: int, edges: list[Json]) -> Json:
    return {
        "id": _gid("Teacher", teacher["id"]),
        "firstName": teacher["first_name"],
        "lastName": teacher["last_name"],
        "students": {"totalCount": total, "edges": edges},
    }


async def leaderboard(sql: Sql, viewer: Principal, variables: Json, secret: str) -> Json:
    """W2: the GLOBAL top 50 of a game from best_scores, and the viewer's own entry when a student.

    Like the resolver, it checks the game exists and is visible, and looks up the viewer's rank only
    when they are not already among the entries.
    """
    game_id = _pk(variables.get("gameId"), "Game")
    if game_id is None:
        return {"leaderboard": None}
    game = await sql.fetch(SELECT_GAMES_BY_IDS, [game_id])
    if not game or (game[0]["status"] == "draft" and viewer.role is not Role.ADMIN):
        return {"leaderboard": None}
    rows = await sql.fetch(SELECT_TOP_GLOBAL, game_id, LEADERBOARD_FIRST)
    entries = [
        {
            "rank": rank,
            "score": r["score"],
            "achievedAt": r["achieved_at"],
            "displayName": display_name(secret, viewer, r),
            "student": (
                {"id": _gid("Student", r["student_id"]), "firstName": r["first_name"]}
                if viewer.can_see_student(r["student_id"], r["org_id"])
                else None
            ),
        }
        for rank, r in enumerate(rows, start=1)
    ]
    viewer_entry: Json | None = None
    if viewer.role is Role.STUDENT:
        mine = next((i for i, r in enumerate(rows) if r["student_id"] == viewer.user_id), None)
        if mine is not None:
            viewer_entry = {"rank": mine + 1, "score": rows[mine]["score"]}
        else:
            own = await sql.fetch(SELECT_RANK_GLOBAL, game_id, viewer.user_id)
            if own:
                viewer_entry = {"rank": own[0]["rank"], "score": own[0]["score"]}
    return {"leaderboard": {"entries": entries, "viewerEntry": viewer_entry}}


async def library(sql: Sql, viewer: Principal, variables: Json, secret: str) -> Json:
    """W3: one page of a category's live games, newest first, with category and level names."""
    category_id = _pk(variables.get("categoryId"), "Category")
    if category_id is None:
        return {"games": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}
    after = variables.get("after")
    params: list[Any] = [LIBRARY_FIRST + 1]
    if after:
        params.extend(decode_cursor(after, (datetime, int)))
    params.append(category_id)
    rows = await sql.fetch(LIBRARY_STATEMENTS[(_CATEGORY_ONLY, bool(after))], *params)
    page = rows[:LIBRARY_FIRST]  # each row carries its category and level names (the loaders' statement)
    edges = []
    for g in page:
        edges.append(
            {
                "cursor": encode_cursor((g["created_at"], g["id"])),
                "node": {
                    "id": _gid("Game", g["id"]),
                    "title": g["title"],
                    "difficulty": g["difficulty"],
                    "thumbnailUrl": g["thumbnail_url"],
                    "createdAt": g["created_at"],
                    "category": {"name": g["category_name"]},
                    "level": {"name": g["level_name"]},
                },
            }
        )
    info = {"hasNextPage": len(rows) > LIBRARY_FIRST, "endCursor": edges[-1]["cursor"] if edges else None}
    return {"games": {"edges": edges, "pageInfo": info}}


async def student(sql: Sql, viewer: Principal, variables: Json, secret: str) -> Json:
    """W4: one student by id, visible to staff of the student's organization."""
    student_id = _pk(variables.get("id"), "Student")
    if student_id is None:
        return {"student": None}
    found = await sql.fetch(SELECT_STUDENTS_BY_IDS, [student_id])
    if not found or not viewer.can_see_student(found[0]["id"], found[0]["org_id"]):
        return {"student": None}
    s = found[0]
    return {
        "student": {
            "id": _gid("Student", s["id"]),
            "firstName": s["first_name"],
            "lastName": s["last_name"],
            "username": s["username"],
            "avatarUrl": s["avatar_url"],
            "status": s["status"].upper(),
        }
    }


Answer = Callable[[Sql, Principal, Json, str], Awaitable[Json]]
ROUTES: dict[str, Answer] = {"/w1": dashboard, "/w2": leaderboard, "/w3": library, "/w4": student}


def _refuse(status: int, code: str, message: str) -> web.Response:
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    return web.Response(status=status, body=body, content_type="application/json")


def _handler(answer: Answer) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            token = bearer_token(request.headers.get("Authorization"))
            if token is None:
                raise AuthError("Authentication required")
            viewer = decode_token(request.app[SECRET_KEY], token)
        except AuthError as exc:
            return _refuse(401, "UNAUTHENTICATED", str(exc))
        try:
            variables = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _refuse(400, "BAD_REQUEST", "body must be a JSON object of variables")
        if not isinstance(variables, dict):
            return _refuse(400, "BAD_REQUEST", "body must be a JSON object of variables")
        async with request.app[POOL_KEY].acquire() as conn:
            sql = Sql(conn)
            data = await answer(sql, viewer, variables, request.app[SECRET_KEY])
        return web.Response(
            body=orjson.dumps({"data": data}),
            content_type="application/json",
            headers={STATEMENTS_HEADER: str(sql.statements)},
        )

    return handle


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(database_url: str, secret: str, pool: PoolSettings | None = None) -> web.Application:
    """The floor app; its pool opens on startup and closes on cleanup (no import-time connections)."""
    app = web.Application()
    app[SECRET_KEY] = secret

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL_KEY] = await create_pool(
            database_url, pool or PoolSettings(), application_name="mlc-bench-floor"
        )
        yield
        await app[POOL_KEY].close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/healthz", _healthz)
    for path, answer in ROUTES.items():
        app.router.add_post(path, _handler(answer))
    return app


def _tune_gc() -> None:
    """The server's start-up GC settings (mlc_graph.http.server), so runtime tuning is not a difference."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def serve(host: str, port: int, settings: Settings) -> None:
    app = create_app(settings.database_url, settings.jwt_secret, settings.pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _tune_gc()
    print(f"floor listening on http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows); asyncio's loop still works
        asyncio.run(serve(args.host, args.port, settings))
    else:
        uvloop.run(serve(args.host, args.port, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
