"""The four bench workloads: their GraphQL documents, the floor's routes, and how ids vary per request.

Ids are drawn from the seeded data with a fixed seed, so two runs send the same request sequence.
Tenant isolation means a token only sees its own organization, so every request carries a token of
the organization its ids belong to: the teacher's own token (W1), a student's token (W2, which also
exercises viewerEntry), any teacher's token (W3, the catalogue is shared) and an admin of the
student's organization (W4).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from mlc_graph.platform.auth import Role, issue_token
from resolvers.relay import encode_global_id

# Bench-only reads that choose ids (not served to clients, so they live here rather than in loaders/).
SELECT_BENCH_TEACHERS = "SELECT id, org_id FROM teachers ORDER BY id"
SELECT_BENCH_STUDENTS = "SELECT id, org_id FROM students ORDER BY id"
SELECT_BENCH_LEADERBOARD_GAMES = """
SELECT g.id FROM games g
WHERE g.status = 'live' AND EXISTS (SELECT 1 FROM best_scores b WHERE b.game_id = g.id)
ORDER BY g.id
"""
SELECT_BENCH_CATEGORIES = "SELECT DISTINCT category_id FROM games WHERE status = 'live' ORDER BY category_id"

TOKEN_TTL_SECONDS = 24 * 3600
# W3 follows the cursor for this many pages, then a client opens another category.
LIBRARY_PAGES_PER_VISIT = 4


def dashboard_document(students_first: int = 50) -> str:
    """W1; `students_first` varies only for the page-size growth measurement (10 vs 100)."""
    return (
        "query Dashboard($id: ID!) { teacher(id: $id) { id firstName lastName "
        f"students(first: {students_first}) {{ totalCount edges {{ node {{ id firstName lastName avatarUrl "
        "assignments(first: 10, status: ACTIVE) { edges { node { id status dueDate "
        "game { id title difficulty thumbnailUrl category { id name } } } } } } } } } }"
    )


LEADERBOARD_DOCUMENT = (
    "query Leaderboard($gameId: ID!) { leaderboard(gameId: $gameId, scope: GLOBAL, first: 50) { "
    "entries { rank score achievedAt displayName student { id firstName } } viewerEntry { rank score } } }"
)
LIBRARY_DOCUMENT = (
    "query Library($categoryId: ID!, $after: String) { "
    "games(first: 50, after: $after, filter: {categoryId: $categoryId}) { "
    "edges { cursor node { id title difficulty thumbnailUrl createdAt category { name } level { name } } } "
    "pageInfo { hasNextPage endCursor } } }"
)
STUDENT_DOCUMENT = (
    "query Student($id: ID!) { student(id: $id) { id firstName lastName username avatarUrl status } }"
)


@dataclass(frozen=True, slots=True)
class Dataset:
    """Ids of the seeded data and ready-made tokens for them."""

    teachers: tuple[tuple[int, int], ...]  # (teacher id, org id)
    students: tuple[tuple[int, int], ...]  # (student id, org id)
    viewers: tuple[int, ...]  # students whose tokens W2 uses
    leaderboard_games: tuple[int, ...]
    categories: tuple[int, ...]
    teacher_tokens: dict[int, str] = field(repr=False)
    admin_tokens: dict[int, str] = field(repr=False)  # by org id
    student_tokens: dict[int, str] = field(repr=False)

    def check(self) -> None:
        """Refuse to run on data that cannot feed every workload (an empty or half-seeded database)."""
        missing = [
            name
            for name, items in (
                ("teachers", self.teachers),
                ("students", self.students),
                ("games with challenge scores", self.leaderboard_games),
                ("categories with live games", self.categories),
            )
            if not items
        ]
        if missing:
            raise RuntimeError("bench data has no " + ", ".join(missing) + ": seed the database first")


def build_dataset(
    teachers: list[tuple[int, int]],
    students: list[tuple[int, int]],
    leaderboard_games: list[int],
    categories: list[int],
    secret: str,
    seed: int = 7,
    viewers: int = 500,
) -> Dataset:
    rng = random.Random(seed)
    first_teacher: dict[int, int] = {}
    for teacher_id, org_id in teachers:
        first_teacher.setdefault(org_id, teacher_id)
    chosen = sorted(rng.sample(students, min(viewers, len(students))))
    return Dataset(
        teachers=tuple(teachers),
        students=tuple(students),
        viewers=tuple(s for s, _ in chosen),
        leaderboard_games=tuple(leaderboard_games),
        categories=tuple(categories),
        teacher_tokens={
            t: issue_token(secret, Role.TEACHER, t, org, ttl_seconds=TOKEN_TTL_SECONDS) for t, org in teachers
        },
        admin_tokens={
            org: issue_token(secret, Role.ADMIN, t, org, ttl_seconds=TOKEN_TTL_SECONDS)
            for org, t in first_teacher.items()
        },
        student_tokens={
            s: issue_token(secret, Role.STUDENT, s, org, ttl_seconds=TOKEN_TTL_SECONDS) for s, org in chosen
        },
    )


async def load_dataset(
    conn: asyncpg.Connection | PoolConnectionProxy[Any], secret: str, seed: int = 7
) -> Dataset:
    teachers = [(r["id"], r["org_id"]) for r in await conn.fetch(SELECT_BENCH_TEACHERS)]
    students = [(r["id"], r["org_id"]) for r in await conn.fetch(SELECT_BENCH_STUDENTS)]
    games = [r["id"] for r in await conn.fetch(SELECT_BENCH_LEADERBOARD_GAMES)]
    categories = [r["category_id"] for r in await conn.fetch(SELECT_BENCH_CATEGORIES)]
    dataset = build_dataset(teachers, students, games, categories, secret, seed)
    dataset.check()
    return dataset


@dataclass(frozen=True, slots=True)
class Request:
    variables: dict[str, Any]
    token: str


ClientState = dict[str, Any]
Picker = Callable[[Dataset, random.Random, ClientState], Request]
Follower = Callable[[ClientState, Any], None]


@dataclass(frozen=True, slots=True)
class Workload:
    """One screen of the product: the GraphQL document, and the floor route that serves the same data."""

    key: str
    title: str
    operation_name: str
    document: str
    floor_path: str
    root_field: str
    pick: Picker
    # Reads the response's `data` when the next request depends on it (W3 follows the cursor).
    follow: Follower | None = None
    # Extra parameters for the floor that the GraphQL side has in its document text.
    floor_params: dict[str, Any] = field(default_factory=dict)

    def floor_body(self, request: Request) -> dict[str, Any]:
        return {**request.variables, **self.floor_params} if self.floor_params else request.variables


def _pick_dashboard(ds: Dataset, rng: random.Random, state: ClientState) -> Request:
    teacher_id, _ = rng.choice(ds.teachers)
    return Request({"id": encode_global_id("Teacher", teacher_id)}, ds.teacher_tokens[teacher_id])


def _pick_leaderboard(ds: Dataset, rng: random.Random, state: ClientState) -> Request:
    game_id = rng.choice(ds.leaderboard_games)
    viewer = rng.choice(ds.viewers)
    return Request({"gameId": encode_global_id("Game", game_id)}, ds.student_tokens[viewer])


def _pick_library(ds: Dataset, rng: random.Random, state: ClientState) -> Request:
    if state.get("after") is None:
        state["category"] = rng.choice(ds.categories)
        state["pages"] = 1
        state["token"] = ds.teacher_tokens[rng.choice(ds.teachers)[0]]
    variables = {"categoryId": encode_global_id("Category", state["category"]), "after": state.get("after")}
    return Request(variables, state["token"])


def _follow_library(state: ClientState, data: Any) -> None:
    """Next request reads the following page, like a user scrolling, until the visit ends."""
    info = data["games"]["pageInfo"] if data and data.get("games") else None
    if info and info["hasNextPage"] and state.get("pages", 1) < LIBRARY_PAGES_PER_VISIT:
        state["after"] = info["endCursor"]
        state["pages"] = state.get("pages", 1) + 1
    else:
        state["after"] = None


def _pick_student(ds: Dataset, rng: random.Random, state: ClientState) -> Request:
    student_id, org_id = rng.choice(ds.students)
    return Request({"id": encode_global_id("Student", student_id)}, ds.admin_tokens[org_id])


def dashboard_workload(students_first: int = 50) -> Workload:
    suffix = "" if students_first == 50 else f" (students first: {students_first})"
    return Workload(
        key="W1" if students_first == 50 else f"W1/first{students_first}",
        title="teacher dashboard" + suffix,
        operation_name="Dashboard",
        document=dashboard_document(students_first),
        floor_path="/w1",
        root_field="teacher",
        pick=_pick_dashboard,
        floor_params={} if students_first == 50 else {"studentsFirst": students_first},
    )


WORKLOADS: tuple[Workload, ...] = (
    dashboard_workload(),
    Workload(
        "W2",
        "leaderboard top 50",
        "Leaderboard",
        LEADERBOARD_DOCUMENT,
        "/w2",
        "leaderboard",
        _pick_leaderboard,
    ),
    Workload(
        "W3",
        "game library page",
        "Library",
        LIBRARY_DOCUMENT,
        "/w3",
        "games",
        _pick_library,
        follow=_follow_library,
    ),
    Workload("W4", "one student by id", "Student", STUDENT_DOCUMENT, "/w4", "student", _pick_student),
)
BY_KEY = {w.key: w for w in WORKLOADS}
