"""The compiled executor against graphql-core: same database, same viewer, byte-identical responses."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest
from graphql import ExecutionResult, OperationDefinitionNode, execute, parse, validate

from mlc_graph.execution.compiled import CompiledExecutor
from mlc_graph.platform.auth import Principal
from mlc_graph.platform.config import Settings
from mlc_graph.platform.db import Executor, QueryStats
from resolvers.batch import BATCH_RESOLVERS
from resolvers.context import make_context
from resolvers.schema import schema
from tests.resolvers.test_queries import DASHBOARD
from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal


@dataclass(frozen=True, slots=True)
class World:
    """A small district: two organizations, classes, a catalogue, assignments, scores and badges."""

    org: int
    other_org: int
    teacher: int
    teacher2: int
    other_teacher: int
    students: list[int]
    other_students: list[int]
    category: int
    category2: int
    level: int
    games: list[int]
    draft_game: int

    def viewers(self) -> dict[str, Principal | None]:
        return {
            "teacher": principal("teacher", self.teacher, self.org),
            "student": principal("student", self.students[0], self.org),
            "admin": principal("admin", self.teacher2, self.org),
            "outsider": principal("teacher", self.other_teacher, self.other_org),
            "anonymous": None,
        }


async def build_world(pool: asyncpg.Pool) -> World:
    org = await make_org(pool, "Conservatory")
    other_org = await make_org(pool, "Elsewhere", tier="SOLO")
    teacher = await make_teacher(pool, org)
    teacher2 = await make_teacher(pool, org, "Ada", "Second")
    other_teacher = await make_teacher(pool, other_org, "Olga", "Other")
    students = await make_students(pool, org, teacher, 6)
    students += await make_students(pool, org, teacher2, 2, status="inactive")
    other_students = await make_students(pool, other_org, other_teacher, 3)
    category, level, games = await make_catalogue(pool, games=6)
    category2, _, games2 = await make_catalogue(pool, games=3)
    _, _, drafts = await make_catalogue(pool, games=1, status="draft")
    await make_assignments(pool, org, students[:6], games[:4])
    await make_assignments(pool, org, students[6:], [games[0], games2[0]], status="completed")
    await make_assignments(pool, other_org, other_students, games2)
    await pool.execute("UPDATE assignments SET completed_at = created_at WHERE status = 'completed'")
    await pool.execute("UPDATE students SET last_active_at = now(), avatar_url = 'https://a.test/' || id")
    for i, student in enumerate(students):
        await make_score(pool, org, student, games[0], 100 + 37 * i)
        await make_score(pool, org, student, games[1], 50 + i, stage="practice")
    for i, student in enumerate(other_students):
        await make_score(pool, other_org, student, games[0], 300 + 11 * i)
    badge = await pool.fetchval(
        "INSERT INTO badges (name, description, icon_url) VALUES ('Perfect Pitch', 'd', NULL) RETURNING id"
    )
    await pool.execute(
        "INSERT INTO student_badges (student_id, badge_id, org_id) SELECT s, $1, $2 FROM unnest($3::bigint[]) s",
        badge,
        org,
        students[:3],
    )
    return World(
        org,
        other_org,
        teacher,
        teacher2,
        other_teacher,
        students,
        other_students,
        category,
        category2,
        level,
        games + games2,
        drafts[0],
    )


def dump(result: ExecutionResult) -> bytes:
    """The whole response as the client would get it (data and errors with messages, paths, locations)."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return orjson.dumps(body)


@dataclass(slots=True)
class Comparison:
    reference: bytes
    compiled: bytes
    reference_statements: int
    compiled_statements: int
    took_compiled_path: bool


async def compare(
    pool: asyncpg.Pool,
    executor: CompiledExecutor,
    query: str,
    variables: dict[str, Any] | None,
    viewer: Principal | None,
    operation_name: str | None = None,
) -> Comparison:
    """Run one operation through graphql-core and the compiled executor, each with a fresh context."""
    document = parse(query)
    assert validate(schema._schema, document) == []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    operation = next(
        o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)
    )
    reference_stats = QueryStats(keep_texts=True)
    context = make_context(Settings(), Executor(pool, reference_stats), viewer)
    reference = execute(schema._schema, document, None, context, variables, operation_name)
    if not isinstance(reference, ExecutionResult):
        reference = await reference
    compiled_stats = QueryStats(keep_texts=True)
    context = make_context(Settings(), Executor(pool, compiled_stats), viewer)
    before = executor.stats.compiled
    # Bounded: a compiled run that never finishes must fail the test, not hang the suite.
    compiled = await asyncio.wait_for(
        executor.execute(document, operation, context, variables, operation_name), 30
    )
    return Comparison(
        dump(reference),
        dump(compiled),
        reference_stats.statements,
        compiled_stats.statements,
        executor.stats.compiled > before,
    )


def queries(w: World) -> list[tuple[str, dict[str, Any] | None]]:
    """Every query shape of tests/test_queries.py and the edge cases of execution semantics."""
    t, s0, s1 = gid("Teacher", w.teacher), gid("Student", w.students[0]), gid("Student", w.students[1])
    g0, c0, lv = gid("Game", w.games[0]), gid("Category", w.category), gid("Level", w.level)
    return [
        (DASHBOARD, {"id": t, "students": 50}),
        (DASHBOARD, {"id": t, "students": 2}),
        (DASHBOARD, {"id": t, "students": 101}),  # refused page size: an error mid-query
        (DASHBOARD, {"id": gid("Teacher", w.other_teacher), "students": 5}),
        (DASHBOARD, {"id": "not-an-id", "students": 5}),
        (DASHBOARD, {"id": 12, "students": "many"}),  # variables that do not coerce
        (
            """query($id: ID!, $after: String) { teacher(id: $id) { students(first: 3, after: $after) {
            edges { cursor node { id lastName } } pageInfo { hasNextPage endCursor hasPreviousPage startCursor }
            } } }""",
            {"id": t, "after": None},
        ),
        (
            """query($id: ID!, $status: StudentStatus) { teacher(id: $id) {
            active: students(first: 2, status: ACTIVE) { totalCount edges { node { id status } } }
            chosen: students(first: 2, status: $status) { totalCount edges { node { id } } pageInfo { hasNextPage } }
            } }""",
            {"id": gid("Teacher", w.teacher2), "status": "INACTIVE"},
        ),
        (
            """query($id: ID!) { teacher(id: $id) { students(first: 3, after: "bad-cursor") { totalCount } } }""",
            {"id": t},
        ),
        (
            """query($s: ID!, $t: ID!) { student(id: $s) { id } teacher(id: $t) { id } node(id: $s) { id } }""",
            {"s": gid("Student", w.other_students[0]), "t": t},
        ),
        (
            """query($me: ID!, $other: ID!, $t: ID!) {
            me: student(id: $me) { id firstName teacher { displayName } organization { name } }
            other: student(id: $other) { id }
            teacher(id: $t) { students(first: 5) { edges { node { id } } } } }""",
            {"me": s0, "other": s1, "t": t},
        ),
        ("{ viewer { role } }", None),
        (
            """query($c: ID!, $after: String) { games(first: 2, after: $after, filter: {categoryId: $c}) {
            edges { node { id title category { name } level { name } } } pageInfo { hasNextPage endCursor } } }""",
            {"c": c0},
        ),
        (
            """{ games(first: 100, filter: {difficulty: BEGINNER}) { edges { node { id createdAt minScore
            maxScore status difficulty thumbnailUrl description } } } }""",
            None,
        ),
        (
            "{ categories { id name description games(first: 2) { totalCount edges { node { title } } } } }",
            None,
        ),
        (
            """query($g: ID!, $scope: LeaderboardScope!) { leaderboard(gameId: $g, scope: $scope, first: 10) {
            scope game { title } entries { rank score achievedAt displayName student { id firstName } }
            viewerEntry { rank score } } }""",
            {"g": g0, "scope": "GLOBAL"},
        ),
        (
            """query($g: ID!) { leaderboard(gameId: $g, scope: CLASS, first: 3) { entries { rank score } } }""",
            {"g": g0},
        ),
        ("""query($g: ID!) { leaderboard(gameId: $g, first: 500) { scope } }""", {"g": g0}),
        (
            """query($t: ID!, $g: ID!) { teacher(id: $t) { students(first: 10) { edges { node {
            scores(first: 2) { edges { node { id score stage createdAt game { title } } } }
            badges { badge { id name description iconUrl } awardedAt }
            bestScore(gameId: $g) { score achievedAt game { title } }
            assignments(first: 3, status: COMPLETED) { totalCount edges { node { id completedAt student { id } } } }
            } } } } }""",
            {"t": t, "g": g0},
        ),
        (
            """query($t: ID!) { classProgress(teacherId: $t) { completionRate teacher { id } students {
            student { id firstName } assignmentsTotal assignmentsCompleted averageScore lastActiveAt } } }""",
            {"t": t},
        ),
        (
            """query($g: ID!, $l: ID!, $s: ID!) { viewer { role student { id } teacher { id }
            organization { name tier seatCount } }
            g: node(id: $g) { __typename id ... on Game { title } }
            l: node(id: $l) { __typename ... on Level { name position } }
            s: node(id: $s) { __typename ... on Student { username } }
            bad: node(id: "not-an-id") { id } }""",
            {"g": g0, "l": lv, "s": s0},
        ),
        (
            """query($c: ID!, $a: ID!) { c: node(id: $c) { ... on Category { name games(first: 1) { totalCount } } }
            a: node(id: $a) { __typename ... on Assignment { status dueDate game { title } } } }""",
            {"c": c0, "a": gid("Assignment", 1)},
        ),
        # Aliases, repeated fields merged, fragments (named, nested, on interfaces), __typename everywhere.
        (
            """query Q($t: ID!) { __typename t1: teacher(id: $t) { ...T } t2: teacher(id: $t) { id, id
            ... on Teacher { firstName } ... { lastName } } }
            fragment T on Teacher { __typename id displayName organization { ...O } students(first: 2) {
            edges { node { ...S ... on Node { id } } } } }
            fragment O on Organization { name tier teachers(first: 5) { totalCount edges { node { lastName } } } }
            fragment S on Student { __typename displayName status createdAt lastActiveAt }""",
            {"t": t},
        ),
        # @skip/@include with literals and variables, on fields, inline fragments and spreads.
        (
            """query($t: ID!, $yes: Boolean!, $no: Boolean = false) { teacher(id: $t) {
            id @skip(if: $yes) firstName @include(if: $yes) lastName @include(if: $no)
            ... @include(if: $yes) { displayName } ...F @skip(if: $no) students(first: 1) @skip(if: true) {
            totalCount } } } fragment F on Teacher { organization { name } }""",
            {"t": t, "yes": True},
        ),
        (
            """query($t: ID!, $yes: Boolean!) { teacher(id: $t) { id @skip(if: $yes) firstName @include(if: $yes) } }""",
            {"t": t, "yes": False},
        ),
        # Several operations in one document.
        ("query A { viewer { role } } query B { categories { name } }", None),
        # Errors deep in lists: a bad argument on every student, errors inside nested connections.
        (
            """query($t: ID!) { teacher(id: $t) { students(first: 3) { edges { node { id
            scores(first: 1, gameId: "not-a-game") { totalCount } } } } } }""",
            {"t": t},
        ),
        (
            """query($t: ID!) { teacher(id: $t) { students(first: 3) { edges { node { id
            bestScore(gameId: "bad") { score } assignments(first: -1) { totalCount } } } } } }""",
            {"t": t},
        ),
        # A sync root field whose children fail while the single async root is still awaited.
        (
            """query($s: ID!) { viewer { teacher { students(first: -1) { totalCount } }
            organization { name } } student(id: $s) { id } }""",
            {"s": s0},
        ),
        (
            """query($s: ID!) { viewer { organization { teachers(first: 500) { totalCount } }
            teacher { displayName } } student(id: $s) { id teacher { organization { name } } } }""",
            {"s": s0},
        ),
        # Introspection is left to graphql-core.
        ('{ __schema { queryType { name } } __type(name: "Game") { name } }', None),
    ]


@pytest.fixture
async def world(clean_db: asyncpg.Pool) -> World:
    return await build_world(clean_db)


async def test_every_query_and_viewer_is_byte_identical(clean_db: asyncpg.Pool, world: World) -> None:
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    mismatches: list[str] = []
    compiled_runs = 0
    for query, variables in queries(world):
        names: list[str | None] = [None]
        if "query A" in query:
            names = ["A", "B"]
        for viewer_name, viewer in world.viewers().items():
            for name in names:
                result = await compare(clean_db, executor, query, variables, viewer, name)
                if result.reference != result.compiled:
                    mismatches.append(
                        f"{viewer_name}: {query[:60]!r}\n{result.reference!r}\n{result.compiled!r}"
                    )
                elif result.took_compiled_path:
                    compiled_runs += 1
                    # A plain success has the statement count of graphql-core (same DataLoader batches).
                    # A plain success runs graphql-core's DataLoader batches. Which loads share a batch
                    # depends on when the database answers (a batch is dispatched two loop passes after
                    # its first load), for graphql-core too: one statement either way is timing, not N+1.
                    assert abs(result.compiled_statements - result.reference_statements) <= 1, query
    assert not mismatches, "\n\n".join(mismatches)
    # Most of those succeed for most viewers: the compiled path really ran (and was not always bailing).
    assert compiled_runs >= 40
    assert executor.stats.unsupported >= 1  # introspection


async def test_dashboard_runs_compiled_with_graphql_cores_statement_count(
    clean_db: asyncpg.Pool, world: World
) -> None:
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    viewer = principal("teacher", world.teacher, world.org)
    result = await compare(
        clean_db, executor, DASHBOARD, {"id": gid("Teacher", world.teacher), "students": 50}, viewer
    )
    assert result.took_compiled_path
    assert result.reference == result.compiled
    # Games bring their categories (loaders.games); a class that fits its page is its own count.
    assert result.compiled_statements == 4
    assert executor.stats.bails == 0


@pytest.mark.parametrize("first", [10, 100])
async def test_dashboard_statements_do_not_grow_with_page_size(clean_db: asyncpg.Pool, first: int) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, first)
    _, _, games = await make_catalogue(clean_db, games=10)
    await make_assignments(clean_db, org, students, games)
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    result = await compare(
        clean_db,
        executor,
        DASHBOARD,
        {"id": gid("Teacher", teacher), "students": first},
        principal("teacher", teacher, org),
    )
    assert result.took_compiled_path and result.reference == result.compiled
    # Games bring their categories (loaders.games); a class that fits its page is its own count.
    assert result.compiled_statements == 4


async def test_errors_fall_back_to_graphql_core_with_the_same_statements(
    clean_db: asyncpg.Pool, world: World
) -> None:
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    viewer = principal("teacher", world.teacher, world.org)
    result = await compare(
        clean_db, executor, DASHBOARD, {"id": gid("Teacher", world.teacher), "students": 101}, viewer
    )
    assert not result.took_compiled_path and executor.stats.bails == 1
    assert result.reference == result.compiled
    assert b"BAD_USER_INPUT" in result.compiled
    # The refused page never reached the database, in either run; the teacher was read once.
    assert result.compiled_statements == result.reference_statements == 1


async def test_plans_are_compiled_once_per_document_and_skip_values(
    clean_db: asyncpg.Pool, world: World
) -> None:
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    viewer = principal("teacher", world.teacher, world.org)
    document = parse("query($t: ID!, $y: Boolean!) { teacher(id: $t) { id @include(if: $y) firstName } }")
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    for include in (True, False, True, False):
        context = make_context(Settings(), Executor(clean_db, QueryStats()), viewer)
        result = await executor.execute(
            document, operation, context, {"t": gid("Teacher", world.teacher), "y": include}, None
        )
        assert result.errors is None and result.data is not None
        assert ("id" in result.data["teacher"]) is include
    assert executor.stats.plans == 2 and executor.stats.compiled == 4


async def test_concurrent_requests_share_plans_and_stay_separate(
    clean_db: asyncpg.Pool, world: World
) -> None:
    executor = CompiledExecutor(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    teacher_view = principal("teacher", world.teacher, world.org)
    outsider = principal("teacher", world.other_teacher, world.other_org)
    comparisons = await asyncio.gather(
        *(
            compare(
                clean_db,
                executor,
                DASHBOARD,
                {"id": gid("Teacher", world.teacher), "students": 10},
                teacher_view if i % 2 else outsider,
            )
            for i in range(8)
        )
    )
    assert all(c.reference == c.compiled for c in comparisons)
    assert len({c.compiled for c in comparisons}) == 2


async def test_pipeline_setting_compiles_a_document_the_second_time_it_comes(
    clean_db: asyncpg.Pool, world: World
) -> None:
    executor = CompiledExecutor.for_schema(schema._schema, batch_resolvers=BATCH_RESOLVERS)
    assert executor is not None and executor.compile_after == 2
    viewer = principal("teacher", world.teacher, world.org)
    document = parse("query($t: ID!) { teacher(id: $t) { id firstName } }")
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    answers = []
    for _ in range(3):
        context = make_context(Settings(), Executor(clean_db, QueryStats()), viewer)
        result = await executor.execute(
            document, operation, context, {"t": gid("Teacher", world.teacher)}, None
        )
        answers.append(dump(result))
    assert len(set(answers)) == 1
    # A one-off document never pays for compiling: graphql-core first, compiled from the second time on.
    assert (executor.stats.fallbacks, executor.stats.compiled, executor.stats.plans) == (1, 2, 1)
