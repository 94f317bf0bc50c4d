"""Small builders that insert real rows for tests (no mocks: the tests read them back over the API)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import asyncpg

_seq = itertools.count(1)


async def make_org(pool: asyncpg.Pool, name: str = "Org", tier: str = "ENSEMBLE", seats: int = 100) -> int:
    org_id: int = await pool.fetchval(
        "INSERT INTO organizations (name, tier, seat_count) VALUES ($1, $2, $3) RETURNING id",
        name,
        tier,
        seats,
    )
    return org_id


async def make_teacher(pool: asyncpg.Pool, org_id: int, first: str = "Tess", last: str = "Teacher") -> int:
    teacher_id: int = await pool.fetchval(
        "INSERT INTO teachers (org_id, first_name, last_name, email, password_hash) "
        "VALUES ($1, $2, $3, $4, 'x') RETURNING id",
        org_id,
        first,
        last,
        f"t{next(_seq)}@example.test",
    )
    return teacher_id


async def make_students(
    pool: asyncpg.Pool, org_id: int, teacher_id: int, count: int, status: str = "active"
) -> list[int]:
    rows = await pool.fetch(
        "INSERT INTO students (org_id, teacher_id, first_name, last_name, username, email, password_hash, status) "
        "SELECT $1, $2, 'First' || n, 'Last' || lpad(n::text, 4, '0'), $3 || '-' || n, "
        "'s' || n || '@example.test', 'secret-hash', $5 "
        "FROM generate_series(1, $4) AS n RETURNING id",
        org_id,
        teacher_id,
        f"u{next(_seq)}",
        count,
        status,
    )
    return [r["id"] for r in rows]


async def make_catalogue(
    pool: asyncpg.Pool, games: int = 5, status: str = "live"
) -> tuple[int, int, list[int]]:
    """A category, a level and `games` games in it, newest last; returns (category, level, game ids)."""
    n = next(_seq)
    category_id: int = await pool.fetchval(
        "INSERT INTO categories (name, description) VALUES ($1, 'd') RETURNING id", f"Category {n}"
    )
    level_id: int = await pool.fetchval(
        "INSERT INTO levels (name, position) VALUES ($1, $2) RETURNING id", f"Level {n}", n
    )
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = await pool.fetch(
        "INSERT INTO games (title, category_id, level_id, difficulty, status, created_at, min_score, max_score) "
        "SELECT 'Game ' || g, $1, $2, 'BEGINNER', $4, $5::timestamptz + g * interval '1 minute', 0, 1000 "
        "FROM generate_series(1, $3) AS g RETURNING id",
        category_id,
        level_id,
        games,
        status,
        base,
    )
    return category_id, level_id, [r["id"] for r in rows]


async def make_assignments(
    pool: asyncpg.Pool, org_id: int, student_ids: list[int], game_ids: list[int], status: str = "active"
) -> None:
    due = date(2026, 12, 1)
    await pool.executemany(
        "INSERT INTO assignments (org_id, student_id, game_id, status, due_date) VALUES ($1, $2, $3, $4, $5)",
        [
            (org_id, s, g, status, due + timedelta(days=i))
            for s in student_ids
            for i, g in enumerate(game_ids)
        ],
    )


async def make_score(
    pool: asyncpg.Pool,
    org_id: int,
    student_id: int,
    game_id: int,
    score: int,
    stage: str = "challenge",
    at: datetime | None = None,
) -> None:
    """Insert a score and keep best_scores in step, as the write path does."""
    at = at or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO scores (org_id, student_id, game_id, score, stage, created_at) VALUES ($1,$2,$3,$4,$5,$6)",
            org_id,
            student_id,
            game_id,
            score,
            stage,
            at,
        )
        if stage == "challenge":
            await conn.execute(
                "INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at) "
                "SELECT $1, s.id, s.org_id, s.teacher_id, $3, $4 FROM students s WHERE s.id = $2 "
                "ON CONFLICT (game_id, student_id) DO UPDATE SET score = EXCLUDED.score, "
                "achieved_at = EXCLUDED.achieved_at WHERE best_scores.score < EXCLUDED.score",
                game_id,
                student_id,
                score,
                at,
            )
