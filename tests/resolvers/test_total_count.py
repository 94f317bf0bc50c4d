"""totalCount counts the whole list, not the page: one batched statement per level, only when selected."""

from __future__ import annotations

import asyncpg

from tests.support.factories import (
    make_assignments,
    make_catalogue,
    make_org,
    make_score,
    make_students,
    make_teacher,
)
from tests.support.graphql_client import gid, principal, run

CLASS_COUNTS = """
query($id: ID!, $game: ID!) { teacher(id: $id) { students(first: 10) { edges { node {
  all: assignments(first: 2) { totalCount edges { node { id } } }
  done: assignments(first: 1, status: COMPLETED) { totalCount }
  scores(first: 1) { totalCount }
  oneGame: scores(first: 1, gameId: $game) { totalCount }
} } } } }
"""


async def test_games_total_count_is_every_live_game_matching_the_filter(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    category, _, _ = await make_catalogue(clean_db, games=7)
    await make_catalogue(clean_db, games=4)
    await make_catalogue(clean_db, games=3, status="draft")
    query = """query($c: ID!) { all: games(first: 2) { totalCount edges { node { id } } }
        some: games(first: 1, filter: {categoryId: $c}) { totalCount } }"""
    result, stats = await run(
        clean_db, query, {"c": gid("Category", category)}, principal("teacher", teacher, org)
    )
    assert result.errors is None and result.data is not None
    assert len(result.data["all"]["edges"]) == 2
    assert result.data["all"]["totalCount"] == 11
    assert result.data["some"]["totalCount"] == 7
    # Two pages and two counts (each alias is its own filter shape).
    assert stats.statements == 4, stats.texts


async def test_student_connections_count_every_row_of_each_student(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 3)
    _, _, games = await make_catalogue(clean_db, games=6)
    await make_assignments(clean_db, org, students, games)
    await clean_db.execute(
        "UPDATE assignments SET status = 'completed', completed_at = now() WHERE student_id = $1 AND game_id = ANY($2)",
        students[0],
        games[:4],
    )
    for i in range(5):
        await make_score(clean_db, org, students[0], games[i % 2], 100 + i)
    await make_score(clean_db, org, students[1], games[0], 50)
    result, stats = await run(
        clean_db,
        CLASS_COUNTS,
        {"id": gid("Teacher", teacher), "game": gid("Game", games[0])},
        principal("teacher", teacher, org),
    )
    assert result.errors is None and result.data is not None
    nodes = [e["node"] for e in result.data["teacher"]["students"]["edges"]]
    assert [n["all"]["totalCount"] for n in nodes] == [6, 6, 6]
    assert [len(n["all"]["edges"]) for n in nodes] == [2, 2, 2]
    assert [n["done"]["totalCount"] for n in nodes] == [4, 0, 0]
    assert [n["scores"]["totalCount"] for n in nodes] == [5, 1, 0]
    assert [n["oneGame"]["totalCount"] for n in nodes] == [3, 1, 0]
    # teacher, students page, then per connection field one page and one count statement (4 x 2).
    assert stats.statements == 10, stats.texts


async def test_total_count_runs_no_statement_unless_selected(clean_db: asyncpg.Pool) -> None:
    org = await make_org(clean_db)
    teacher = await make_teacher(clean_db, org)
    students = await make_students(clean_db, org, teacher, 2)
    _, _, games = await make_catalogue(clean_db, games=3)
    await make_assignments(clean_db, org, students, games)
    query = """query($id: ID!) { games(first: 1) { edges { node { id } } }
        teacher(id: $id) { students(first: 5) { edges { node {
        assignments(first: 1) { edges { node { id } } } scores(first: 1) { edges { node { id } } } } } } } }"""
    result, stats = await run(
        clean_db, query, {"id": gid("Teacher", teacher)}, principal("teacher", teacher, org)
    )
    assert result.errors is None
    assert not any("count(" in text for text in stats.texts), stats.texts
    assert stats.statements == 5, stats.texts
