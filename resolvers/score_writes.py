"""submitScore: a play of a game, recorded once per idempotency key, with the student's new best and rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from loaders.score_writes import (
    Submission,
    SubmissionResult,
    SubmissionTarget,
    claim_submission,
    fetch_submission_result,
    fetch_submission_target,
    insert_score,
)
from loaders.scores import ScoreRow
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError, ConflictError, ForbiddenError, NotFoundError
from mlc_graph.platform.events import ScoreCommitted
from resolvers.access import see_student
from resolvers.enums import ScoreStage
from resolvers.info import Info
from resolvers.relay import expect_global_id
from resolvers.scores import BestScore, Score

if TYPE_CHECKING:
    from resolvers.students import Student

MAX_KEY_LENGTH = 128


@strawberry.input(description="One finished play of a game.")
class SubmitScoreInput:
    game_id: strawberry.ID
    score: int = strawberry.field(description="Must lie within the game's minScore..maxScore.")
    stage: ScoreStage
    idempotency_key: str = strawberry.field(
        description="Chosen by the client per play (a UUID) and re-sent on every retry of that play: "
        "the first call records it, retries return the first result and write nothing."
    )
    student_id: strawberry.ID | None = strawberry.field(
        default=None, description="Teachers and admins submitting on a student's behalf name the student."
    )
    client_mutation_id: str | None = None


async def resolve_payload_student(
    root: SubmitScorePayload, info: Info
) -> Annotated[Student, strawberry.lazy("resolvers.students")] | None:
    row = await info.context.loaders.students_by_id.load(root._student_id)
    return see_student(info.context.viewer, row)  # type: ignore[return-value]


@strawberry.type(description="The recorded play, and where it leaves the student.")
class SubmitScorePayload:
    client_mutation_id: str | None
    score: Score
    best_score: BestScore | None = strawberry.field(
        description="The student's best challenge score in this game after this play (null if none yet)."
    )
    rank: int | None = strawberry.field(
        description="The student's rank on the game's GLOBAL leaderboard after this play (null if none)."
    )
    _student_id: strawberry.Private[int]
    student: Annotated[Student, strawberry.lazy("resolvers.students")] | None = strawberry.field(
        resolver=resolve_payload_student, description="The student, read after the write."
    )


def _student_pk(viewer: Principal, student_id: strawberry.ID | None) -> int:
    """Whose score this is: the signed-in student, or the student staff name."""
    if viewer.role is Role.STUDENT:
        if student_id is not None and expect_global_id(student_id, "Student") != viewer.user_id:
            raise ForbiddenError("Students may only submit their own scores")
        return viewer.user_id
    if student_id is None:
        raise BadUserInputError("Staff submitting a score must name the student", argument="studentId")
    return expect_global_id(student_id, "Student")


def _check_target(viewer: Principal, target: SubmissionTarget, input: SubmitScoreInput) -> tuple[int, int]:
    """(org id, teacher id) of the student once every rule holds; the coded error otherwise."""
    if target.student_id is None or target.org_id != viewer.org_id or target.teacher_id is None:
        raise NotFoundError("No such student", argument="studentId")
    if viewer.role is Role.TEACHER and target.teacher_id != viewer.user_id:
        raise ForbiddenError("Teachers may only submit scores for students of their own class")
    if target.game_id is None or (target.game_status == "draft" and viewer.role is not Role.ADMIN):
        raise NotFoundError(f"No Game with id {input.game_id!r}", argument="gameId")
    assert target.min_score is not None and target.max_score is not None
    if not target.min_score <= input.score <= target.max_score:
        raise BadUserInputError(
            f"Score {input.score} is outside this game's range {target.min_score}..{target.max_score}",
            argument="score",
            minScore=target.min_score,
            maxScore=target.max_score,
        )
    if not 1 <= len(input.idempotency_key) <= MAX_KEY_LENGTH:
        raise BadUserInputError(
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters", argument="idempotencyKey"
        )
    return target.org_id, target.teacher_id


async def _record(info: Info, input: SubmitScoreInput) -> tuple[SubmissionResult, int]:
    viewer = info.context.viewer
    student_pk = _student_pk(viewer, input.student_id)
    game_pk = expect_global_id(input.game_id, "Game")
    async with client_errors(), info.context.db.transaction() as tx:
        target = await fetch_submission_target(tx, student_pk, game_pk)
        org_id, teacher_id = _check_target(viewer, target, input)
        submission = Submission(student_pk, input.idempotency_key, game_pk, input.score, input.stage.value)
        if await claim_submission(tx, submission):
            return await insert_score(tx, submission, org_id, teacher_id), teacher_id
        first = await fetch_submission_result(tx, student_pk, input.idempotency_key)
        if first is None or not first.same_request(submission):
            raise ConflictError(
                "This idempotencyKey was already used for a different score; use a new key per play",
                argument="idempotencyKey",
            )
        return first, teacher_id


async def resolve_submit_score(info: Info, input: SubmitScoreInput) -> SubmitScorePayload:
    result, teacher_id = await _record(info, input)
    info.context.loaders.clear_all()
    score: ScoreRow = result.score
    if not result.replayed:
        # After the commit: listeners (Redis boards, subscriptions) must never see an uncommitted score.
        await info.context.events.score_committed(
            ScoreCommitted(
                score_id=score.id,
                game_id=score.game_id,
                student_id=score.student_id,
                org_id=score.org_id,
                teacher_id=teacher_id,
                score=score.score,
                stage=score.stage,
                best=result.best.score if result.best is not None else None,
                best_achieved_at=result.best.achieved_at if result.best is not None else None,
            )
        )
    return SubmitScorePayload(
        client_mutation_id=input.client_mutation_id,
        score=score,  # type: ignore[arg-type]
        best_score=result.best,  # type: ignore[arg-type]
        rank=result.rank,
        _student_id=score.student_id,
    )


@strawberry.type
class ScoreMutation:
    submit_score: SubmitScorePayload = strawberry.mutation(
        resolver=resolve_submit_score,
        description="Record a play once per idempotencyKey; retries return the first result.",
    )
