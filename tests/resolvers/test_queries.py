"""The read path over real PostgreSQL: results, tenant isolation and SQL statement counts."""

from __future__ import annotations

import asyncpg
import pytest

from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal, run

DASHBOARD = """
query Dashboard($id: ID!, $students: Int!) {
  teacher(id: $id) {
    id firstName lastName
    students(first: $students) {
      totalCount
      edges { cursor node {
        id firstName lastName avatarUrl
        assignments(first: 10, status: ACTIVE) { edges { node {
          id status dueDate
          game { id title difficulty thumbnailUrl category { id name } }
        } } }
      } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


async def _class(pool: asyncpg.Pool, size: int) -> tuple[int, int, list[int]]:
    org = await make_org(pool)
    teacher = await make_teacher(pool, org)
    students = await make_students(pool, org, teacher, size)
    _, _, games = await make_catalogue(pool, games=10)
    await make_assignments(pool, org, students, games)
    return org, teacher, students


@pytest.mark.parametrize("size", [5, 50])
async def test_dashboard_statement_count_does_not_grow_with_the_class(
    clean_db: asyncpg.Pool, size: int
) -> None:
    org, teacher, _ = await _class(clean_db, size)
    result, stats = await run(
        clean_db,
        DASHBOARD,
        {"id": gid("Teacher", teacher), "students": 50},
        principal("teacher", teacher, org),
    )
    assert result.errors is None
    assert result.data is not None
    edges = result.data["teacher"]["students"]["edges"]
    assert len(edges) == size
    assert all(len(e["node"]["assignments"]["edges"]) == 10 for e in edges)
    assert result.data["teacher"]["students"]["totalCount"] == size
    # teacher, students page, assignments, games with their categories: one statement each; the class
    # fits its page of 50, so the page's size is totalCount (no count statement).
    assert stats.statements == 4, stats.texts
    assert not any("count(*)" in text for text in stats.texts)
    assert not any("FROM categories WHERE" in text for text in stats.texts)


async def test_dashboard_pages_follow_cursors(clean_db: asyncpg.Pool) -> None:
    org, teacher, students = await _class(clean_db, 7)
    viewer = principal("teacher", teacher, org)
    seen: list[str] = []
    after = None
    query = """query($id: ID!, $after: String) { teacher(id: $id) { students(first: 3, after: $after) {
        edges { node { id lastName } } pageInfo { hasNextPage endCursor hasPreviousPage } } } }"""
    for _ in range(3):
        result, _ = await run(clean_db, query, {"id": gid("Teacher", teacher), "after": after}, viewer)
        assert result.errors is None and result.data is not None
        conn = result.data["teacher"]["students"]
        seen.extend(e["node"]["lastName"] for e in conn["edges"])
        after = conn["pageInfo"]["endCursor"]
        if not conn["pageInfo"]["hasNextPage"]:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == len(students)


async def test_first_over_100_is_refused(clean_db: asyncpg.Pool) -> None:
    org, teacher, _ = await _class(clean_db, 1)
    result, stats = await run(
        clean_db,
        DASHBOARD,
        {"id": gid("Teacher", teacher), "students": 101},
        principal("teacher", teacher, org),
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "argument": "first", "maximum": 100}
    assert stats.statements == 1  # the teacher; the refused page never reached the database


async def test_other_organization_reads_as_not_found_everywhere(clean_db: asyncpg.Pool) -> None:
    _, teacher_a, students_a = await _class(clean_db, 2)
    org_b = await make_org(clean_db, "Other")
    teacher_b = await make_teacher(clean_db, org_b)
    outsider = principal("teacher", teacher_b, org_b)
    query = """query($s: ID!, $t: ID!) { student(id: $s) { id } teacher(id: $t) { id }
        node(id: $s) { id } }"""
    result, _ = await run(
        clean_db, query, {"s": gid("Student", students_a[0]), "t": gid("Teacher", teacher_a)}, outsider
    )
    assert result.errors is None
    assert result.data == {"student": None, "teacher": None, "node": None}


async def test_student_sees_only_themselves(clean_db: asyncpg.Pool) -> None:
    org, teacher, students = await _class(clean_db, 3)
    me = principal("student", students[0], org)
    query = """query($me: ID!, $other: ID!, $t: ID!) {
        me: student(id: $me) { id firstName teacher { displayName } organization { name } }
        other: student(id: $other) { id }
        teacher(id: $t) { students(first: 5) { edges { node { id } } } } }"""
    result, _ = await run(
        clean_db,
        query,
        {
            "me": gid("Student", students[0]),
            "other": gid("Student", students[1]),
            "t": gid("Teacher", teacher),
        },
        me,
    )
    assert result.errors is None and result.data is not None
    assert result.data["me"]["id"] == gid("Student", students[0])
    assert result.data["me"]["teacher"]["displayName"] == "T. Teacher"
    assert result.data["other"] is None
    assert result.data["teacher"]["students"]["edges"] == []


async def test_unauthenticated_gets_a_clear_error(clean_db: asyncpg.Pool) -> None:
    result, stats = await run(clean_db, "{ viewer { role } }")
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "UNAUTHENTICATED"}
    assert stats.statements == 0


async def test_game_library_filters_and_pages(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    category, _, _ = await make_catalogue(clean_db, games=30)
    await make_catalogue(clean_db, games=5)
    await make_catalogue(clean_db, games=3, status="draft")
    viewer = principal("teacher", teacher, org)
    query = """query($c: ID!, $after: String) { games(first: 20, after: $after, filter: {categoryId: $c}) {
        edges { node { id title category { name } level { name } } } pageInfo { hasNextPage endCursor } } }"""
    first, stats = await run(clean_db, query, {"c": gid("Category", category)}, viewer)
    assert first.errors is None and first.data is not None
    page = first.data["games"]
    assert [e["node"]["title"] for e in page["edges"]][:2] == ["Game 30", "Game 29"]
    assert page["pageInfo"]["hasNextPage"] is True
    # One statement: the page, each game joined to its category and level (the loaders are primed).
    assert stats.statements == 1, stats.texts
    second, _ = await run(
        clean_db, query, {"c": gid("Category", category), "after": page["pageInfo"]["endCursor"]}, viewer
    )
    assert second.data is not None
    assert len(second.data["games"]["edges"]) == 10
    assert second.data["games"]["pageInfo"]["hasNextPage"] is False
    everything, _ = await run(clean_db, "{ games(first: 100) { edges { node { id } } } }", None, viewer)
    assert everything.data is not None
    assert len(everything.data["games"]["edges"]) == 35  # drafts are not in the library


async def test_leaderboard_ranks_and_hides_other_organizations(clean_db: asyncpg.Pool) -> None:
    org_a = await make_org(clean_db, "A")
    teacher_a = await make_teacher(clean_db, org_a)
    students_a = await make_students(clean_db, org_a, teacher_a, 2)
    org_b = await make_org(clean_db, "B")
    teacher_b = await make_teacher(clean_db, org_b)
    students_b = await make_students(clean_db, org_b, teacher_b, 1)
    _, _, games = await make_catalogue(clean_db, games=1)
    await make_score(clean_db, org_a, students_a[0], games[0], 500)
    await make_score(clean_db, org_a, students_a[1], games[0], 700)
    await make_score(clean_db, org_b, students_b[0], games[0], 900)
    await make_score(clean_db, org_a, students_a[0], games[0], 100, stage="practice")
    query = """query($g: ID!, $scope: LeaderboardScope!) { leaderboard(gameId: $g, scope: $scope, first: 10) {
        scope entries { rank score displayName student { id } } viewerEntry { rank score } } }"""
    me = principal("student", students_a[0], org_a)
    result, _ = await run(clean_db, query, {"g": gid("Game", games[0]), "scope": "GLOBAL"}, me)
    assert result.errors is None and result.data is not None
    entries = result.data["leaderboard"]["entries"]
    assert [(e["rank"], e["score"]) for e in entries] == [(1, 900), (2, 700), (3, 500)]
    assert entries[0]["student"] is None and entries[0]["displayName"].startswith("Player ")
    assert entries[1]["student"] is None  # a classmate: same org, but students see only themselves
    assert entries[1]["displayName"] == "First2 L."
    assert entries[2]["student"] == {"id": gid("Student", students_a[0])}
    assert result.data["leaderboard"]["viewerEntry"] == {"rank": 3, "score": 500}
    org_board, _ = await run(clean_db, query, {"g": gid("Game", games[0]), "scope": "ORGANIZATION"}, me)
    assert org_board.data is not None
    assert [e["score"] for e in org_board.data["leaderboard"]["entries"]] == [700, 500]
    assert org_board.data["leaderboard"]["viewerEntry"] == {"rank": 2, "score": 500}


async def test_student_relations(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 3)
    _, _, games = await make_catalogue(clean_db, games=2)
    for s in students:
        await make_score(clean_db, org, s, games[0], 300)
        await make_score(clean_db, org, s, games[0], 400)
        await make_score(clean_db, org, s, games[1], 50, stage="practice")
    badge = await clean_db.fetchval("INSERT INTO badges (name) VALUES ('Perfect Pitch') RETURNING id")
    await clean_db.execute(
        "INSERT INTO student_badges (student_id, badge_id, org_id) SELECT s, $1, $2 FROM unnest($3::bigint[]) s",
        badge,
        org,
        students,
    )
    query = """query($t: ID!, $g: ID!) { teacher(id: $t) { students(first: 10) { edges { node {
        scores(first: 2) { edges { node { score stage game { title } } } }
        badges { badge { name } awardedAt }
        bestScore(gameId: $g) { score game { title } }
    } } } } }"""
    result, stats = await run(
        clean_db,
        query,
        {"t": gid("Teacher", teacher), "g": gid("Game", games[0])},
        principal("admin", 99, org),
    )
    assert result.errors is None and result.data is not None
    nodes = [e["node"] for e in result.data["teacher"]["students"]["edges"]]
    assert len(nodes) == 3
    for node in nodes:
        assert [e["node"]["stage"] for e in node["scores"]["edges"]] == ["PRACTICE", "CHALLENGE"]
        assert node["badges"][0]["badge"]["name"] == "Perfect Pitch"
        assert node["bestScore"] == {"score": 400, "game": {"title": "Game 1"}}
    # teacher, students, scores, badges, best scores, games: one each.
    assert stats.statements == 6, stats.texts


async def test_class_progress_report(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 4)
    _, _, games = await make_catalogue(clean_db, games=3)
    await make_assignments(clean_db, org, students, games)
    await clean_db.execute("UPDATE assignments SET status = 'completed' WHERE game_id = $1", games[0])
    await make_score(clean_db, org, students[0], games[0], 200)
    await make_score(clean_db, org, students[0], games[1], 400)
    query = """query($t: ID!) { classProgress(teacherId: $t) { completionRate teacher { id } students {
        student { id firstName } assignmentsTotal assignmentsCompleted averageScore lastActiveAt } } }"""
    result, stats = await run(
        clean_db, query, {"t": gid("Teacher", teacher)}, principal("teacher", teacher, org)
    )
    assert result.errors is None and result.data is not None
    report = result.data["classProgress"]
    assert len(report["students"]) == 4
    first = report["students"][0]
    assert (first["assignmentsTotal"], first["assignmentsCompleted"], first["averageScore"]) == (3, 1, 300.0)
    assert first["lastActiveAt"] is not None
    assert report["completionRate"] == pytest.approx(1 / 3)
    assert stats.statements == 2
    student_view, _ = await run(
        clean_db, query, {"t": gid("Teacher", teacher)}, principal("student", students[0], org)
    )
    assert student_view.errors is not None and student_view.errors[0].extensions == {"code": "FORBIDDEN"}


async def test_viewer_and_node(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db, "Conservatory")
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 1)
    _, level, games = await make_catalogue(clean_db, games=1)
    query = """query($g: ID!, $l: ID!, $s: ID!) { viewer { role student { id } teacher { id } organization { name tier } }
        g: node(id: $g) { __typename id ... on Game { title } }
        l: node(id: $l) { __typename ... on Level { name } }
        s: node(id: $s) { __typename ... on Student { username } }
        bad: node(id: "not-an-id") { id } }"""
    variables = {"g": gid("Game", games[0]), "l": gid("Level", level), "s": gid("Student", students[0])}
    result, _ = await run(clean_db, query, variables, principal("student", students[0], org))
    assert result.data is not None
    assert result.data["viewer"] == {
        "role": "STUDENT",
        "student": {"id": gid("Student", students[0])},
        "teacher": None,
        "organization": {"name": "Conservatory", "tier": "ENSEMBLE"},
    }
    assert result.data["g"] == {"__typename": "Game", "id": gid("Game", games[0]), "title": "Game 1"}
    assert result.data["l"]["__typename"] == "Level"
    assert result.data["s"]["__typename"] == "Student"
    assert result.data["bad"] is None
    assert result.errors is not None and result.errors[0].extensions == {"code": "NOT_FOUND"}


async def test_every_node_type_refetches_by_id(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 1)
    category, level, games = await make_catalogue(clean_db, games=1)
    await make_assignments(clean_db, org, students, games)
    await make_score(clean_db, org, students[0], games[0], 10)
    score = await clean_db.fetchval("SELECT id FROM scores")
    assignment = await clean_db.fetchval("SELECT id FROM assignments")
    badge = await clean_db.fetchval("INSERT INTO badges (name) VALUES ('Star') RETURNING id")
    ids = {
        "Student": students[0],
        "Teacher": teacher,
        "Organization": org,
        "Game": games[0],
        "Category": category,
        "Level": level,
        "Assignment": assignment,
        "Score": score,
        "Badge": badge,
    }
    fields = " ".join(f'{t.lower()}: node(id: "{gid(t, pk)}") {{ __typename id }}' for t, pk in ids.items())
    result, stats = await run(clean_db, "{ " + fields + " }", None, principal("teacher", teacher, org))
    assert result.errors is None and result.data is not None
    for type_name, pk in ids.items():
        assert result.data[type_name.lower()] == {"__typename": type_name, "id": gid(type_name, pk)}
    assert stats.statements == len(ids)  # one batched statement per type


async def test_games_of_each_category_bring_their_category_and_level(clean_db: asyncpg.Pool) -> None:
    """Category.games pages are joined to each game's category and level, which prime those loaders:
    categories, then one statement for every category's page, and nothing per game."""
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    await make_catalogue(clean_db, games=4)
    await make_catalogue(clean_db, games=2)
    query = """{ categories { name games(first: 3) { edges { node { title category { name } level { name } } } } } }"""
    result, stats = await run(clean_db, query, {}, principal("teacher", teacher, org))
    assert result.errors is None and result.data is not None
    for category in result.data["categories"]:
        nodes = [e["node"] for e in category["games"]["edges"]]
        assert nodes and all(n["category"]["name"] == category["name"] for n in nodes)
        assert all(n["level"]["name"].startswith("Level ") for n in nodes)
    assert [len(c["games"]["edges"]) for c in result.data["categories"]] == [3, 2]
    assert stats.statements == 2, stats.texts


async def test_class_total_is_counted_when_it_does_not_fit_the_page(clean_db: asyncpg.Pool) -> None:
    """totalCount from the page's size only when the first page holds the whole class; past one page, or
    after a cursor, the class is counted."""
    org, teacher, _ = await _class(clean_db, 5)
    viewer = principal("teacher", teacher, org)
    query = """query($id: ID!, $first: Int!, $after: String) { teacher(id: $id) {
        students(first: $first, after: $after) { totalCount edges { node { id } } pageInfo { endCursor } } } }"""
    counts: dict[tuple[int, bool], int] = {}
    for first in (3, 5, 6):
        result, stats = await run(clean_db, query, {"id": gid("Teacher", teacher), "first": first}, viewer)
        assert result.errors is None and result.data is not None
        students = result.data["teacher"]["students"]
        assert students["totalCount"] == 5
        counts[(first, False)] = sum("count(*)" in text for text in stats.texts)
        after = students["pageInfo"]["endCursor"]
        result, stats = await run(
            clean_db, query, {"id": gid("Teacher", teacher), "first": first, "after": after}, viewer
        )
        assert result.errors is None and result.data is not None
        assert result.data["teacher"]["students"]["totalCount"] == 5
        counts[(first, True)] = sum("count(*)" in text for text in stats.texts)
    # Counted: a first page of 3 (more follow) and every page after a cursor; not: a first page of 5 or 6.
    assert counts == {(3, False): 1, (3, True): 1, (5, False): 0, (5, True): 1, (6, False): 0, (6, True): 1}
