"""submitScore (a play, recorded once per idempotency key) and submitScores (plays replayed after offline)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import TYPE_CHECKING, Annotated

import strawberry

from loaders.games import GameRow
from loaders.score_writes import (
    Play,
    Standing,
    Submission,
    SubmissionResult,
    SubmissionTarget,
    claim_plays,
    claim_submission,
    ensure_score_months,
    fetch_claimed_plays,
    fetch_submission_result,
    fetch_submission_target,
    insert_plays,
    insert_score,
)
from loaders.scores import ScoreRow
from loaders.students import StudentRow
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import BadUserInputError, ConflictError, ForbiddenError, NotFoundError
from mlc_graph.platform.events import ScoreCommitted
from resolvers.access import see_game, see_student
from resolvers.directives import ListSize
from resolvers.enums import ScoreStage
from resolvers.info import Info
from resolvers.relay import expect_global_id
from resolvers.scores import BestScore, Score

if TYPE_CHECKING:
    from resolvers.games import Game
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


async def _record(info: Info, input: SubmitScoreInput) -> tuple[SubmissionResult, SubmissionTarget]:
    viewer = info.context.viewer
    student_pk = _student_pk(viewer, input.student_id)
    game_pk = expect_global_id(input.game_id, "Game")
    async with client_errors(), info.context.db.transaction() as tx:
        target = await fetch_submission_target(tx, student_pk, game_pk)
        org_id, teacher_id = _check_target(viewer, target, input)
        submission = Submission(student_pk, input.idempotency_key, game_pk, input.score, input.stage.value)
        if await claim_submission(tx, submission):
            return await insert_score(tx, submission, org_id, teacher_id), target
        first = await fetch_submission_result(tx, student_pk, input.idempotency_key)
        if first is None or not first.same_request(submission):
            raise ConflictError(
                "This idempotencyKey was already used for a different score; use a new key per play",
                argument="idempotencyKey",
            )
        return first, target


async def resolve_submit_score(info: Info, input: SubmitScoreInput) -> SubmitScorePayload:
    result, target = await _record(info, input)
    assert target.teacher_id is not None  # _check_target refused a student without one
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
                teacher_id=target.teacher_id,
                score=score.score,
                stage=score.stage,
                best=result.best.score if result.best is not None else None,
                best_achieved_at=result.best.achieved_at if result.best is not None else None,
                first_name=target.first_name,
                last_name=target.last_name,
            )
        )
    return SubmitScorePayload(
        client_mutation_id=input.client_mutation_id,
        score=score,  # type: ignore[arg-type]
        best_score=result.best,  # type: ignore[arg-type]
        rank=result.rank,
        _student_id=score.student_id,
    )


# -- submitScores: plays recorded offline, replayed in one request ---------------------------------------

MAX_PLAYS = 100
# A phone's clock may run a little fast; further in the future than this is not a play that happened.
FUTURE_SKEW = dt.timedelta(minutes=5)


@strawberry.enum(description="What became of one replayed play.")
class PlayStatus(enum.Enum):
    ACCEPTED = "ACCEPTED"
    REPLAYED = "REPLAYED"
    REFUSED = "REFUSED"


@strawberry.enum(description="Why a replayed play was refused; the rest of the batch is not affected.")
class PlayRefusal(enum.Enum):
    UNKNOWN_GAME = "UNKNOWN_GAME"
    SCORE_OUT_OF_RANGE = "SCORE_OUT_OF_RANGE"
    PLAYED_IN_THE_FUTURE = "PLAYED_IN_THE_FUTURE"
    PLAYED_TOO_LONG_AGO = "PLAYED_TOO_LONG_AGO"
    PLAYED_AT_WITHOUT_OFFSET = "PLAYED_AT_WITHOUT_OFFSET"
    BAD_IDEMPOTENCY_KEY = "BAD_IDEMPOTENCY_KEY"
    DUPLICATE_IN_BATCH = "DUPLICATE_IN_BATCH"
    KEY_REUSED = "KEY_REUSED"


@strawberry.input(description="One play recorded while offline.")
class OfflinePlayInput:
    game_id: strawberry.ID
    score: int = strawberry.field(description="Must lie within the game's minScore..maxScore.")
    stage: ScoreStage
    idempotency_key: str = strawberry.field(
        description="Chosen per play when it is recorded; kept for retries."
    )
    played_at: dt.datetime = strawberry.field(
        description="When it was played, with its UTC offset: at most MLC_OFFLINE_REPLAY_DAYS ago and not in "
        "the future (a few minutes of clock skew aside). The score counts from then."
    )


@strawberry.input(description="Plays recorded offline, sent together when the device is back online.")
class SubmitScoresInput:
    plays: list[OfflinePlayInput] = strawberry.field(description=f"1 to {MAX_PLAYS} plays.")
    student_id: strawberry.ID | None = strawberry.field(
        default=None, description="Teachers and admins replaying a class device name the student."
    )
    client_mutation_id: str | None = None


@strawberry.type(description="The outcome of one play, in the order sent.")
class PlayResult:
    idempotency_key: str
    status: PlayStatus
    refusal: PlayRefusal | None = strawberry.field(description="Why, when REFUSED.")
    message: str | None
    score: Score | None = strawberry.field(
        description="The recorded play (ACCEPTED now, or REPLAYED: recorded earlier with this key)."
    )


async def resolve_standing_game(
    root: GameStanding, info: Info
) -> Annotated[Game, strawberry.lazy("resolvers.games")] | None:
    return await info.context.loaders.games_by_id.load(root._game_id)  # type: ignore[return-value]


@strawberry.type(description="Where the batch leaves the student in one game it played at challenge stage.")
class GameStanding:
    _game_id: strawberry.Private[int]
    game: Annotated[Game, strawberry.lazy("resolvers.games")] | None = strawberry.field(
        resolver=resolve_standing_game
    )
    best_score: BestScore | None
    rank: int | None = strawberry.field(description="On the game's GLOBAL leaderboard.")


async def resolve_scores_payload_student(
    root: SubmitScoresPayload, info: Info
) -> Annotated[Student, strawberry.lazy("resolvers.students")] | None:
    row = await info.context.loaders.students_by_id.load(root._student_id)
    return see_student(info.context.viewer, row)  # type: ignore[return-value]


@strawberry.type(description="Every play's outcome; a retry of the whole batch writes nothing twice.")
class SubmitScoresPayload:
    client_mutation_id: str | None
    accepted: int = strawberry.field(description="Plays recorded by this call.")
    results: list[PlayResult]
    standings: list[GameStanding]
    _student_id: strawberry.Private[int]
    student: Annotated[Student, strawberry.lazy("resolvers.students")] | None = strawberry.field(
        resolver=resolve_scores_payload_student, description="The student, read after the write."
    )


def _refused(key: str, refusal: PlayRefusal, message: str) -> PlayResult:
    return PlayResult(
        idempotency_key=key, status=PlayStatus.REFUSED, refusal=refusal, message=message, score=None
    )


def _recorded(key: str, status: PlayStatus, score: ScoreRow) -> PlayResult:
    return PlayResult(idempotency_key=key, status=status, refusal=None, message=None, score=score)  # type: ignore[arg-type]


def _check_play(
    viewer: Principal, play: OfflinePlayInput, games: dict[int, GameRow | None], now: dt.datetime, days: int
) -> Play | PlayResult:
    """The play to record, or its refusal."""
    key = play.idempotency_key
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return _refused(
            key, PlayRefusal.BAD_IDEMPOTENCY_KEY, f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters"
        )
    try:
        game_pk = expect_global_id(play.game_id, "Game")
    except NotFoundError:
        game_pk = 0
    game = see_game(viewer, games.get(game_pk))
    if game is None:
        return _refused(key, PlayRefusal.UNKNOWN_GAME, f"No Game with id {play.game_id!r}")
    if not game.min_score <= play.score <= game.max_score:
        return _refused(
            key,
            PlayRefusal.SCORE_OUT_OF_RANGE,
            f"Score {play.score} is outside this game's range {game.min_score}..{game.max_score}",
        )
    played_at = play.played_at
    if played_at.tzinfo is None:
        return _refused(key, PlayRefusal.PLAYED_AT_WITHOUT_OFFSET, "playedAt needs a UTC offset")
    if played_at > now + FUTURE_SKEW:
        return _refused(
            key, PlayRefusal.PLAYED_IN_THE_FUTURE, "playedAt is in the future: check the device clock"
        )
    if played_at < now - dt.timedelta(days=days):
        return _refused(
            key, PlayRefusal.PLAYED_TOO_LONG_AGO, f"Plays older than {days} days are not replayed"
        )
    return Play(key, game_pk, play.score, play.stage.value, played_at.astimezone(dt.UTC))


def _game_pks(plays: list[OfflinePlayInput]) -> list[int]:
    pks: list[int] = []
    for play in plays:
        try:
            pks.append(expect_global_id(play.game_id, "Game"))
        except NotFoundError:
            continue  # refused per play below
    return list(dict.fromkeys(pks))


def _events(
    scores: dict[str, ScoreRow], standings: dict[int, Standing], student: StudentRow
) -> list[ScoreCommitted]:
    """One event per game the batch wrote: its best challenge play (else its last play) and the best now."""
    chosen: dict[int, ScoreRow] = {}
    for score in scores.values():
        current = chosen.get(score.game_id)
        rank = (score.stage == "challenge", score.score, -score.created_at.timestamp())
        if current is None or rank > (
            current.stage == "challenge",
            current.score,
            -current.created_at.timestamp(),
        ):
            chosen[score.game_id] = score
    events = []
    for game_id, score in chosen.items():
        standing = standings.get(game_id)
        best = standing.best if standing is not None else None
        events.append(
            ScoreCommitted(
                score_id=score.id,
                game_id=game_id,
                student_id=score.student_id,
                org_id=score.org_id,
                teacher_id=student.teacher_id,
                score=score.score,
                stage=score.stage,
                best=best.score if best is not None else None,
                best_achieved_at=best.achieved_at if best is not None else None,
                first_name=student.first_name,
                last_name=student.last_name,
            )
        )
    return events


async def resolve_submit_scores(info: Info, input: SubmitScoresInput) -> SubmitScoresPayload:
    viewer = info.context.viewer
    student_pk = _student_pk(viewer, input.student_id)
    if not 1 <= len(input.plays) <= MAX_PLAYS:
        raise BadUserInputError(
            f"plays must hold 1 to {MAX_PLAYS} plays, got {len(input.plays)}",
            argument="plays",
            maximum=MAX_PLAYS,
        )
    loaders = info.context.loaders
    student = see_student(viewer, await loaders.students_by_id.load(student_pk))
    if student is None:
        raise NotFoundError("No such student", argument="studentId")
    if viewer.role is Role.TEACHER and student.teacher_id != viewer.user_id:
        raise ForbiddenError("Teachers may only submit scores for students of their own class")
    pks = _game_pks(input.plays)
    games = dict(zip(pks, await loaders.games_by_id.load_many(pks), strict=True))
    now = dt.datetime.now(dt.UTC)
    results: list[PlayResult | Play] = []
    keys: set[str] = set()
    for play in input.plays:
        checked = _check_play(viewer, play, games, now, info.context.settings.offline_replay_days)
        if isinstance(checked, Play):
            if checked.key in keys:
                results.append(
                    _refused(
                        checked.key,
                        PlayRefusal.DUPLICATE_IN_BATCH,
                        "This idempotencyKey is twice in the batch",
                    )
                )
                continue
            keys.add(checked.key)
        results.append(checked)
    plays = [p for p in results if isinstance(p, Play)]
    if plays:
        await ensure_score_months(info.context.db, sorted({p.played_at.date().replace(day=1) for p in plays}))
    scores: dict[str, ScoreRow] = {}
    standings: dict[int, Standing] = {}
    earlier: dict[str, SubmissionResult | None] = {}
    if plays:
        async with client_errors(), info.context.db.transaction() as tx:
            claimed = await claim_plays(tx, student_pk, plays)
            retried = [p.key for p in plays if p.key not in claimed]
            if retried:
                earlier = await fetch_claimed_plays(tx, student_pk, retried)
            fresh = [p for p in plays if p.key in claimed]
            if fresh:
                scores, standings = await insert_plays(
                    tx, student_pk, student.org_id, student.teacher_id, fresh
                )
    loaders.clear_all()
    # After the commit, once per game, not per play: boards and subscribers must never see uncommitted
    # scores, and a batch of 50 plays of one game moves its boards once.
    for event in _events(scores, standings, student):
        await info.context.events.score_committed(event)
    outcome: list[PlayResult] = []
    for entry in results:
        if isinstance(entry, PlayResult):
            outcome.append(entry)
        elif entry.key in scores:
            outcome.append(_recorded(entry.key, PlayStatus.ACCEPTED, scores[entry.key]))
        else:
            first = earlier.get(entry.key)
            if first is None or not entry.same_as(first):
                outcome.append(
                    _refused(
                        entry.key,
                        PlayRefusal.KEY_REUSED,
                        "This idempotencyKey was already used for a different play",
                    )
                )
            else:
                outcome.append(_recorded(entry.key, PlayStatus.REPLAYED, first.score))
                if first.score.stage == "challenge" and first.score.game_id not in standings:
                    standings[first.score.game_id] = Standing(first.score.game_id, first.best, first.rank)
    return SubmitScoresPayload(
        client_mutation_id=input.client_mutation_id,
        accepted=len(scores),
        results=outcome,
        standings=[
            GameStanding(_game_id=s.game_id, best_score=s.best, rank=s.rank)  # type: ignore[arg-type]
            for s in sorted(standings.values(), key=lambda s: s.game_id)
            if s.best is not None
        ],
        _student_id=student_pk,
    )


@strawberry.type
class ScoreMutation:
    submit_score: SubmitScorePayload = strawberry.mutation(
        resolver=resolve_submit_score,
        description="Record a play once per idempotencyKey; retries return the first result.",
    )
    # Priced per play (the mutation weight times the number of plays, each result sized the same), so the
    # hourly cost-points quota charges a batch what its plays would cost one by one.
    submit_scores: SubmitScoresPayload = strawberry.mutation(
        resolver=resolve_submit_scores,
        description="Replay up to 100 plays recorded offline: each accepted or refused on its own, once per "
        "idempotencyKey, counted from its playedAt.",
        directives=[ListSize(slicing_arguments=["input.plays"], sized_fields=["results"])],
    )
