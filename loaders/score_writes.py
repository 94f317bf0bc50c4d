"""Score submission: one idempotent transaction that records a play, the best score and assignment completion.

Call these on an executor inside `Executor.transaction()`. The order matters:
1. `claim_submission` inserts (student, idempotency key) with ON CONFLICT DO NOTHING. A concurrent retry
   of the same key blocks on that insert until the first transaction ends, then finds the key taken.
   This is the unique constraint doing the work, not a read-then-write race.
2. The first submission writes the score, the best score and completed assignments in one statement,
   then ranks the student with the leaderboards' own SQL and stores the result on the claim in another.
3. A retry reads the stored result instead: every retry returns exactly what the first call returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from loaders.leaderboards import SELECT_RANK_GLOBAL
from loaders.scores import BestScoreRow, ScoreRow
from mlc_graph.platform.db import Executor

# One row even when the student or the game does not exist, so the caller can say which is missing.
SELECT_SUBMISSION_TARGET = """
SELECT s.id AS student_id, s.org_id, s.teacher_id,
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
