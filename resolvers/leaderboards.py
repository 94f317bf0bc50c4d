"""Leaderboards: best challenge score per student, ranked, in a class, an organization or globally.

Privacy: an entry names its student only when the viewer may see that student; everyone else
appears under a stable pseudonym, so no student identity crosses an organization.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from loaders.games import GameRow
from loaders.leaderboards import BoardKey, RankedRow
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.errors import BadUserInputError, NotFoundError
from resolvers.access import see_game, see_student
from resolvers.directives import ListSize
from resolvers.enums import LeaderboardScope
from resolvers.info import Info
from resolvers.live_boards import read_board
from resolvers.relay import expect_global_id

if TYPE_CHECKING:
    from resolvers.games import Game
    from resolvers.students import Student

MAX_LEADERBOARD_SIZE = 100


@functools.lru_cache(maxsize=65536)  # pure and hot: every foreign entry of every board (issue 7)
def pseudonym(secret: str, student_id: int) -> str:
    """A stable, non-reversible name for a student of another organization."""
    digest = hmac.new(secret.encode(), f"leaderboard:{student_id}".encode(), hashlib.sha256).hexdigest()
    return f"Player {digest[:6].upper()}"


def resolve_display_name(root: RankedRow, info: Info) -> str:
    viewer = info.context.viewer
    if viewer.can_see_org(root.org_id):
        return f"{root.first_name} {root.last_name[:1]}."
    return pseudonym(info.context.settings.jwt_secret, root.student_id)


async def resolve_entry_student(
    root: RankedRow, info: Info
) -> Annotated[Student, strawberry.lazy("resolvers.students")] | None:
    viewer = info.context.viewer
    if not viewer.can_see_student(root.student_id, root.org_id):
        return None
    row = await info.context.loaders.students_by_id.load(root.student_id)
    return see_student(viewer, row)  # type: ignore[return-value]


@strawberry.type(description="One ranked line of a leaderboard.")
class LeaderboardEntry:
    rank: int = strawberry.field(description="1 = best; ties go to whoever reached the score first.")
    score: int
    achieved_at: dt.datetime
    display_name: str = strawberry.field(resolver=resolve_display_name)
    student: Annotated[Student, strawberry.lazy("resolvers.students")] | None = strawberry.field(
        resolver=resolve_entry_student,
        description="The student, when the viewer may see them (null across organizations).",
    )

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, RankedRow)


@strawberry.type(description="The best challenge scores of a game within a scope.")
class Leaderboard:
    game: Annotated[Game, strawberry.lazy("resolvers.games")]
    scope: LeaderboardScope
    # Sized by Query.leaderboard(first:) through its @listSize(sizedFields: ["entries"]); 10 is its default.
    entries: list[LeaderboardEntry] = strawberry.field(directives=[ListSize(assumed_size=10)])
    viewer_entry: LeaderboardEntry | None = strawberry.field(
        description="The viewing student's own line (null for staff or without a challenge score)."
    )


async def board_for(info: Info, game_id: int, scope: LeaderboardScope) -> BoardKey:
    """The board a viewer means by a scope: CLASS is the student's teacher's class (or the teacher's own)."""
    viewer: Principal = info.context.viewer
    if scope is LeaderboardScope.GLOBAL:
        return BoardKey(game_id, "GLOBAL", None)
    if scope is LeaderboardScope.CLASS and viewer.role is Role.TEACHER:
        return BoardKey(game_id, "CLASS", viewer.user_id)
    if scope is LeaderboardScope.CLASS and viewer.role is Role.STUDENT:
        me = await info.context.loaders.students_by_id.load(viewer.user_id)
        if me is not None:
            return BoardKey(game_id, "CLASS", me.teacher_id)
    # Admins have no class of their own: their CLASS view is the organization.
    return BoardKey(game_id, "ORGANIZATION", viewer.org_id)


async def open_board(
    info: Info, game_id: strawberry.ID, scope: LeaderboardScope, first: int
) -> tuple[GameRow, BoardKey, int | None]:
    """Check a board request (page size, a game the viewer may see) and name the board and the viewer's
    own student id (students only), for queries and subscriptions alike."""
    viewer = info.context.viewer
    if not 0 <= first <= MAX_LEADERBOARD_SIZE:
        raise BadUserInputError(f"'first' must be between 0 and {MAX_LEADERBOARD_SIZE}", argument="first")
    pk = expect_global_id(game_id, "Game")
    game = see_game(viewer, await info.context.loaders.games_by_id.load(pk))
    if game is None:
        raise NotFoundError(f"No Game with id {game_id!r}")
    board = await board_for(info, pk, scope)
    return game, board, viewer.user_id if viewer.role is Role.STUDENT else None


async def resolve_leaderboard(
    info: Info,
    game_id: strawberry.ID,
    scope: LeaderboardScope | None = LeaderboardScope.GLOBAL,
    first: int | None = 10,
) -> Leaderboard:
    first = 10 if first is None else first
    scope = LeaderboardScope.GLOBAL if scope is None else scope
    game, board, me = await open_board(info, game_id, scope, first)
    # The live Redis board when real time is on (PostgreSQL otherwise, or while Redis is unavailable).
    entries, mine = await read_board(info, board, first, me)
    return Leaderboard(
        game=game,  # type: ignore[arg-type]
        scope=scope,
        entries=entries,  # type: ignore[arg-type]
        viewer_entry=mine,  # type: ignore[arg-type]
    )
