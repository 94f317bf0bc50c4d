"""Score submission: one idempotent transaction that records a play, the best score and assignment completion.

Call these on an executor inside `Executor.transaction()`. The order matters:
1. `claim_submission` inserts (student, idempotency key) with ON CONFLICT DO NOTHING. A concurrent retry
   of the same key blocks on that insert until the first transaction ends, then finds the key taken.
   This is the unique constraint doing the work, not a read-then-write race.
2. The first submission writes the score, the best score and completed assignments in one statement,
   then ranks the student with the leaderboards' own SQL and stores the result on the claim in another.
3. A retry reads the stored result instead: every retry returns exactly what the first call returned.

A claim is kept for the idempotency window (`Settings.idempotency_days`); `mlc-graph maintain` deletes
older ones with `delete_expired_claims`, after which the same key is a new play.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

import asyncpg

from loaders.leaderboards import RANK_OF_TEMPLATE, SELECT_RANK_GLOBAL
from loaders.scores import BestScoreRow, ScoreRow
from mlc_graph.platform.db import Executor
from mlc_graph.platform.migrate import ensure_score_partitions

log = logging.getLogger(__name__)

# One row even when the student or the game does not exist, so the caller can say which is missing.
SELECT_SUBMISSION_TARGET = """
SELECT s.id AS student_id, s.org_id, s.teacher_id, s.first_name, s.last_name,
       g.id AS game_id, g.status AS game_status, g.min_score, g.max_score
FROM (SELECT 1) AS one
LEFT JOIN students s ON s.id = $1
LEFT JOIN games g ON g.id = $2
"""
CLAIM_SUBMISSION = """
INSERT INTO score_submissions (student_id, idempotency_key, game_id, score, stage)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (student_id, idempotency_key) DO NOTHING
RETURNING true
"""
SELECT_SUBMISSION = """
SELECT game_id, score, stage, score_id, org_id, score_created_at, best_score, best_achieved_at, rank
FROM score_submissions WHERE student_id = $1 AND idempotency_key = $2
"""
# Data-modifying CTEs all run to completion whether or not the outer SELECT reads them. Only challenge
# plays compete for the best score; any play of a game completes the student's active assignments of it
# and is the student's latest activity (Student.lastActiveAt, the class progress report).
INSERT_SCORE = """
WITH new_score AS (
    INSERT INTO scores (org_id, student_id, game_id, score, stage)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING id, org_id, student_id, game_id, score, stage, created_at
), best AS (
    INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at)
    SELECT game_id, student_id, org_id, $6, score, created_at FROM new_score WHERE stage = 'challenge'
    ON CONFLICT (game_id, student_id) DO UPDATE
        SET score = EXCLUDED.score, achieved_at = EXCLUDED.achieved_at,
            org_id = EXCLUDED.org_id, teacher_id = EXCLUDED.teacher_id
        WHERE best_scores.score < EXCLUDED.score
    RETURNING 1
), completed AS (
    UPDATE assignments SET status = 'completed', completed_at = (SELECT created_at FROM new_score)
    WHERE student_id = $2 AND game_id = $3 AND status = 'active'
    RETURNING 1
), active AS (
    UPDATE students SET last_active_at = (SELECT created_at FROM new_score) WHERE id = $2
)
SELECT n.*, (SELECT count(*) FROM completed) AS completed_assignments FROM new_score n
"""
# Rank and store in one statement. The rank is the leaderboards' own query (composed here, not copied),
# run after the score's statement so it sees the new best; the LEFT JOIN keeps the update when the
# student has no challenge score in the game yet ($1 game, $2 student as SELECT_RANK_GLOBAL expects).
RECORD_RANKED_RESULT = f"""
WITH ranked AS ({SELECT_RANK_GLOBAL})
UPDATE score_submissions AS sub
SET score_id = $4, org_id = $5, score_created_at = $6,
    best_score = ranked.score, best_achieved_at = ranked.achieved_at, rank = ranked.rank
FROM (SELECT 1) AS one LEFT JOIN ranked ON true
WHERE sub.student_id = $2 AND sub.idempotency_key = $3
RETURNING ranked.score AS best_score, ranked.achieved_at AS best_achieved_at, ranked.rank
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class SubmissionTarget:
    """Who and what a submission is about; None fields mean that row does not exist."""

    student_id: int | None
    org_id: int | None
    teacher_id: int | None
    first_name: str | None
    last_name: str | None
    game_id: int | None
    game_status: str | None
    min_score: int | None
    max_score: int | None


@dataclass(frozen=True, slots=True)
class Submission:
    student_id: int
    idempotency_key: str
    game_id: int
    score: int
    stage: str


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """What the first call of an idempotency key produced; `replayed` is True for every later call."""

    score: ScoreRow
    best: BestScoreRow | None
    rank: int | None
    replayed: bool
    completed_assignments: int

    def same_request(self, submission: Submission) -> bool:
        return (self.score.game_id, self.score.score, self.score.stage) == (
            submission.game_id,
            submission.score,
            submission.stage,
        )


async def fetch_submission_target(db: Executor, student_id: int, game_id: int) -> SubmissionTarget:
    row = await db.fetchrow(SELECT_SUBMISSION_TARGET, student_id, game_id)
    assert row is not None  # the query selects from a one-row relation
    return SubmissionTarget(**row)


async def claim_submission(db: Executor, submission: Submission) -> bool:
    """True when this call is the first with its key (and must write); False when it is a retry."""
    claimed = await db.fetchval(
        CLAIM_SUBMISSION,
        submission.student_id,
        submission.idempotency_key,
        submission.game_id,
        submission.score,
        submission.stage,
    )
    return claimed is True


async def fetch_submission_result(db: Executor, student_id: int, key: str) -> SubmissionResult | None:
    """The stored result of a claimed key; None if it has none (the claim must be from this transaction)."""
    row = await db.fetchrow(SELECT_SUBMISSION, student_id, key)
    if row is None or row["score_id"] is None:
        return None
    score = ScoreRow(
        id=row["score_id"],
        org_id=row["org_id"],
        student_id=student_id,
        game_id=row["game_id"],
        score=row["score"],
        stage=row["stage"],
        created_at=row["score_created_at"],
    )
    best = None
    if row["best_score"] is not None:
        best = BestScoreRow(student_id, row["game_id"], row["best_score"], row["best_achieved_at"])
    return SubmissionResult(score, best, row["rank"], replayed=True, completed_assignments=0)


async def insert_score(
    db: Executor, submission: Submission, org_id: int, teacher_id: int
) -> SubmissionResult:
    """Write a claimed submission: score, best score, assignments; then rank it and store the result."""
    row = await db.fetchrow(
        INSERT_SCORE,
        org_id,
        submission.student_id,
        submission.game_id,
        submission.score,
        submission.stage,
        teacher_id,
    )
    assert row is not None  # INSERT ... RETURNING of one VALUES row
    completed = row["completed_assignments"]
    score = ScoreRow(**{k: v for k, v in row.items() if k != "completed_assignments"})
    stored = await db.fetchrow(
        RECORD_RANKED_RESULT,
        submission.game_id,
        submission.student_id,
        submission.idempotency_key,
        score.id,
        score.org_id,
        score.created_at,
    )
    assert stored is not None  # the claim row was inserted earlier in this transaction
    best = None
    if stored["best_score"] is not None:
        best = BestScoreRow(
            submission.student_id, submission.game_id, stored["best_score"], stored["best_achieved_at"]
        )
    return SubmissionResult(score, best, stored["rank"], replayed=False, completed_assignments=completed)


# -- submitScores: a batch of plays recorded offline, in a constant number of statements ----------------
#
# The same claim table and order as above, for up to 100 plays at once: claim every key (sorted, so two
# overlapping batches lock their claims in one order), read back the keys that were already claimed
# (retries), write the new plays in one statement, then rank and store the results in one more.

# Months that have no scores partition yet (their rows would land in scores_default).
SELECT_MISSING_SCORE_MONTHS = """
SELECT m::date AS month FROM unnest($1::date[]) AS m
WHERE to_regclass(format('scores_%s', to_char(m, 'YYYY_MM'))) IS NULL
"""
CLAIM_PLAYS = """
INSERT INTO score_submissions (student_id, idempotency_key, game_id, score, stage)
SELECT $1, p.key, p.game_id, p.score, p.stage
FROM unnest($2::text[], $3::bigint[], $4::int[], $5::text[]) AS p(key, game_id, score, stage)
ORDER BY p.key
ON CONFLICT (student_id, idempotency_key) DO NOTHING
RETURNING idempotency_key
"""
SELECT_CLAIMED_PLAYS = """
SELECT idempotency_key, game_id, score, stage, score_id, org_id, score_created_at,
       best_score, best_achieved_at, rank
FROM score_submissions WHERE student_id = $1 AND idempotency_key = ANY($2::text[])
"""
# Each play keeps the time it was played: the score lands in that month's partition and counts on boards
# and reports by it. Ids are drawn first (the CTE is materialized: nextval is volatile) so that every
# inserted row maps back to its key. One best-score row per game for the whole batch: the batch's best
# challenge play, kept only if it beats the stored best, or ties it earlier (achieved_at is when the best
# was first reached, and an offline play may predate the stored one). An active assignment is completed
# by the earliest play of its game made after it was assigned; lastActiveAt never moves back.
INSERT_PLAYS = """
WITH plays AS (
    SELECT nextval(pg_get_serial_sequence('scores', 'id')) AS id, p.key, p.game_id, p.score, p.stage,
           p.played_at
    FROM unnest($3::text[], $4::bigint[], $5::int[], $6::text[], $7::timestamptz[])
        AS p(key, game_id, score, stage, played_at)
), new_scores AS (
    INSERT INTO scores (id, org_id, student_id, game_id, score, stage, created_at)
    SELECT id, $1, $2, game_id, score, stage, played_at FROM plays ORDER BY id
    RETURNING id
), batch_best AS (
    SELECT DISTINCT ON (game_id) game_id, score, played_at FROM plays WHERE stage = 'challenge'
    ORDER BY game_id, score DESC, played_at
), best AS (
    INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at)
    SELECT game_id, $2, $1, $8, score, played_at FROM batch_best ORDER BY game_id
    ON CONFLICT (game_id, student_id) DO UPDATE
        SET score = EXCLUDED.score, achieved_at = EXCLUDED.achieved_at,
            org_id = EXCLUDED.org_id, teacher_id = EXCLUDED.teacher_id
        WHERE best_scores.score < EXCLUDED.score
           OR (best_scores.score = EXCLUDED.score AND EXCLUDED.achieved_at < best_scores.achieved_at)
    RETURNING 1
), completed AS (
    UPDATE assignments a
    SET status = 'completed',
        completed_at = (SELECT min(p.played_at) FROM plays p
                        WHERE p.game_id = a.game_id AND p.played_at >= a.created_at)
    WHERE a.student_id = $2 AND a.status = 'active'
      AND EXISTS (SELECT 1 FROM plays p WHERE p.game_id = a.game_id AND p.played_at >= a.created_at)
    RETURNING 1
), active AS (
    UPDATE students SET last_active_at = greatest(last_active_at, (SELECT max(played_at) FROM plays))
    WHERE id = $2
)
SELECT p.key, p.id FROM plays p
"""
RECORD_PLAY_RESULTS = f"""
WITH results AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[])
        AS r(key, score_id, created_at, game_id)
), ranked AS (
    SELECT b.game_id, b.score, b.achieved_at, {RANK_OF_TEMPLATE.format(scope="")} AS rank
    FROM best_scores b WHERE b.student_id = $1 AND b.game_id IN (SELECT game_id FROM results)
)
UPDATE score_submissions AS sub
SET score_id = r.score_id, org_id = $6, score_created_at = r.created_at,
    best_score = ranked.score, best_achieved_at = ranked.achieved_at, rank = ranked.rank
FROM results r LEFT JOIN ranked ON ranked.game_id = r.game_id
WHERE sub.student_id = $1 AND sub.idempotency_key = r.key
RETURNING r.game_id, ranked.score AS best_score, ranked.achieved_at AS best_achieved_at, ranked.rank
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class Play:
    """One play recorded offline, with the time it was played."""

    key: str
    game_id: int
    score: int
    stage: str
    played_at: datetime

    def same_as(self, stored: SubmissionResult) -> bool:
        return (self.game_id, self.score, self.stage) == (
            stored.score.game_id,
            stored.score.score,
            stored.score.stage,
        )


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the batch leaves the student in one game: best challenge score and GLOBAL rank."""

    game_id: int
    best: BestScoreRow | None
    rank: int | None


async def fetch_missing_score_months(db: Executor, months: Sequence[date]) -> list[date]:
    return [r["month"] for r in await db.fetch(SELECT_MISSING_SCORE_MONTHS, list(months))]


async def claim_plays(db: Executor, student_id: int, plays: Sequence[Play]) -> set[str]:
    """The keys this call claimed (and must write); the others were claimed before (retries)."""
    rows = await db.fetch(
        CLAIM_PLAYS,
        student_id,
        [p.key for p in plays],
        [p.game_id for p in plays],
        [p.score for p in plays],
        [p.stage for p in plays],
    )
    return {r["idempotency_key"] for r in rows}


async def fetch_claimed_plays(
    db: Executor, student_id: int, keys: Sequence[str]
) -> dict[str, SubmissionResult | None]:
    """What the first call of each key recorded (None for a claim without a result)."""
    found: dict[str, SubmissionResult | None] = {}
    for row in await db.fetch(SELECT_CLAIMED_PLAYS, student_id, list(keys)):
        result = None
        if row["score_id"] is not None:
            score = ScoreRow(
                row["score_id"],
                row["org_id"],
                student_id,
                row["game_id"],
                row["score"],
                row["stage"],
                row["score_created_at"],
            )
            best = None
            if row["best_score"] is not None:
                best = BestScoreRow(student_id, row["game_id"], row["best_score"], row["best_achieved_at"])
            result = SubmissionResult(score, best, row["rank"], replayed=True, completed_assignments=0)
        found[row["idempotency_key"]] = result
    return found


async def insert_plays(
    db: Executor, student_id: int, org_id: int, teacher_id: int, plays: Sequence[Play]
) -> tuple[dict[str, ScoreRow], dict[int, Standing]]:
    """Write claimed plays (scores, best scores, assignments, activity), then rank and store the results.

    Returns the score of each key and the student's standing in each game played.
    """
    rows = await db.fetch(
        INSERT_PLAYS,
        org_id,
        student_id,
        [p.key for p in plays],
        [p.game_id for p in plays],
        [p.score for p in plays],
        [p.stage for p in plays],
        [p.played_at for p in plays],
        teacher_id,
    )
    ids = {r["key"]: r["id"] for r in rows}
    scores = {
        p.key: ScoreRow(ids[p.key], org_id, student_id, p.game_id, p.score, p.stage, p.played_at)
        for p in plays
    }
    stored = await db.fetch(
        RECORD_PLAY_RESULTS,
        student_id,
        list(scores),
        [s.id for s in scores.values()],
        [s.created_at for s in scores.values()],
        [s.game_id for s in scores.values()],
        org_id,
    )
    standings: dict[int, Standing] = {}
    for r in stored:
        best = None
        if r["best_score"] is not None:
            best = BestScoreRow(student_id, r["game_id"], r["best_score"], r["best_achieved_at"])
        standings[r["game_id"]] = Standing(r["game_id"], best, r["rank"])
    return scores, standings


async def ensure_score_months(db: Executor, months: Sequence[date]) -> list[date]:
    """Create any missing scores partition of these months (first days); returns the months still missing.

    Runs outside the write transaction, on a connection of its own (DDL; the request's transaction must
    not hold a lock on the partitioned table while it waits for plays). A month created concurrently by
    another request counts as present.
    """
    missing = await fetch_missing_score_months(db, months)
    if not missing:
        return []
    async with db.pool.acquire() as conn:
        for month in missing:
            try:
                await ensure_score_partitions(cast(asyncpg.Connection, conn), today=month, back=0, ahead=0)
            except asyncpg.PostgresError:
                log.warning("could not create the scores partition of %s", month, exc_info=True)
    return await fetch_missing_score_months(db, missing)


# -- Retention: claims older than the idempotency window, deleted by `mlc-graph maintain` ---------------
#
# A bounded batch per statement, oldest first through idx_score_submissions_created, each committing on
# its own: a backlog of millions locks one batch of rows at a time and never builds one long transaction.
DELETE_EXPIRED_CLAIMS = """
DELETE FROM score_submissions WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM score_submissions WHERE created_at < $1 ORDER BY created_at LIMIT $2
))
"""
EXPIRED_CLAIMS_PER_STATEMENT = 5000
# A claim's created_at is when its transaction began, on PostgreSQL's clock, and a replayed play may say
# it was played up to five minutes after that (FUTURE_SKEW): the day covers both, as the change log's does.
CLAIM_MARGIN = timedelta(days=1)


async def delete_expired_claims(
    conn: asyncpg.Connection,
    retention_days: int,
    now: datetime | None = None,
    batch_size: int = EXPIRED_CLAIMS_PER_STATEMENT,
) -> int:
    """Delete the claims made more than `retention_days` plus a day ago; returns how many.

    Call it outside a transaction, so each batch commits by itself.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days) - CLAIM_MARGIN
    deleted = 0
    while True:
        status = await conn.execute(DELETE_EXPIRED_CLAIMS, cutoff, batch_size)
        count = int(status.rsplit(" ", 1)[1])  # "DELETE 5000"
        deleted += count
        if count < batch_size:
            return deleted
