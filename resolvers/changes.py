"""Query.changes: delta sync for phones and tablets that go offline (what changed since a token)."""

from __future__ import annotations

import datetime as dt
import enum
import time
from dataclasses import dataclass
from typing import Annotated, NewType

import strawberry

from loaders.changes import ChangeRow, Scope, fetch_changes, fetch_horizon
from loaders.games import GameRow
from loaders.pagination import MAX_PAGE_SIZE
from mlc_graph.domain.sync_tokens import Position, SyncClaims, SyncTokenError, decode_token, encode_token
from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.errors import BadUserInputError, SyncTokenExpiredError
from resolvers.access import see_game
from resolvers.assignments import Assignment
from resolvers.badges import EarnedBadge
from resolvers.games import Game
from resolvers.info import Info
from resolvers.relay import encode_global_id
from resolvers.scores import BestScore, Score
from resolvers.students import Student

DEFAULT_PAGE = 100
_DAY = 86_400


def _parse_token(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("SyncToken must be a string")  # graphql-core reports it as a variable error
    return value


# Registered in the schema's scalar_map (resolvers/schema.py).
SyncToken = NewType("SyncToken", str)
SYNC_TOKEN_SCALAR = strawberry.scalar(
    name="SyncToken",
    description="Opaque, signed position in the change log, issued by Query.changes to one viewer.",
    serialize=str,
    parse_value=_parse_token,
)


@strawberry.enum(description="What kind of object changed.")
class ChangeEntity(enum.StrEnum):
    ASSIGNMENT = "Assignment"
    SCORE = "Score"
    BEST_SCORE = "BestScore"
    EARNED_BADGE = "EarnedBadge"
    STUDENT = "Student"
    GAME = "Game"


@strawberry.enum(description="How it changed.")
class ChangeOperation(enum.Enum):
    UPSERT = "UPSERT"
    TOMBSTONE = "TOMBSTONE"


SyncedNode = Annotated[
    Assignment | Score | BestScore | EarnedBadge | Student | Game,
    strawberry.union("SyncedNode", description="What a change carries: the object as it is now."),
]


def _composite_id(kind: str, *parts: int) -> str:
    # Best scores and earned badges have no Node id: their key is the student and the game or badge.
    return encode_global_id(kind, parts[0]) + "." + ".".join(str(p) for p in parts[1:])


def resolve_change_id(root: ChangeRow) -> strawberry.ID:
    if root.entity in {"BestScore", "EarnedBadge"} and root.student_id is not None:
        return strawberry.ID(_composite_id(root.entity, root.student_id, root.entity_id))
    return strawberry.ID(encode_global_id(root.entity, root.entity_id))


def resolve_operation(root: ChangeRow) -> ChangeOperation:
    return ChangeOperation.TOMBSTONE if root.tombstone else ChangeOperation.UPSERT


def resolve_student_id(root: ChangeRow) -> strawberry.ID | None:
    if root.student_id is None:
        return None
    return strawberry.ID(encode_global_id("Student", root.student_id))


def resolve_node(root: ChangeRow, info: Info) -> SyncedNode | None:
    node = root.node
    if isinstance(node, GameRow):
        node = see_game(info.context.viewer, node)
    return node  # type: ignore[return-value]


@strawberry.type(description="One change to something the viewer may hold.")
class Change:
    entity: ChangeEntity
    id: strawberry.ID = strawberry.field(
        resolver=resolve_change_id,
        description="The object's global id (for a BestScore or EarnedBadge: the student's, then the game "
        "or badge id), the key to upsert or delete in the client's store.",
    )
    operation: ChangeOperation = strawberry.field(resolver=resolve_operation)
    changed_at: dt.datetime = strawberry.field(description="When the writing transaction began.")
    student_id: strawberry.ID | None = strawberry.field(
        resolver=resolve_student_id, description="The student it concerns (null for the game catalogue)."
    )
    node: SyncedNode | None = strawberry.field(
        resolver=resolve_node,
        description="The object as it is now (null for a tombstone): apply it over what the client holds.",
    )


@strawberry.type(description="A page of changes, oldest first, and where the next page starts.")
class ChangeFeed:
    changes: list[Change]
    next_token: SyncToken = strawberry.field(
        description="Store it; pass it as `since` next time (also after hasMore: false)."
    )
    has_more: bool = strawberry.field(description="More changes are waiting: ask again now with nextToken.")


def _scope(viewer: Principal) -> Scope:
    if viewer.role is Role.STUDENT:
        return Scope("student", viewer.user_id, viewer.org_id)
    if viewer.role is Role.TEACHER:
        return Scope("teacher", viewer.user_id, viewer.org_id)
    return Scope("organization", viewer.org_id, viewer.org_id)


@dataclass(frozen=True, slots=True)
class _Issuer:
    secret: str
    viewer: Principal

    def token(self, position: Position, moment: int) -> SyncToken:
        role, user, org = self.viewer.role.value, self.viewer.user_id, self.viewer.org_id
        return SyncToken(encode_token(self.secret, SyncClaims(role, user, org, position, moment)))

    def verify(self, text: str, retention_days: int, now: int) -> SyncClaims:
        refetch = "refetch what the app shows and start again with `since: null`"
        try:
            token = decode_token(self.secret, text)
        except SyncTokenError as exc:
            raise BadUserInputError(
                f"Not a valid sync token: {refetch}", argument="since", refetch=True
            ) from exc
        viewer = self.viewer
        if (token.role, token.user_id, token.org_id) != (viewer.role.value, viewer.user_id, viewer.org_id):
            raise BadUserInputError(
                f"This sync token was issued to another user: {refetch}", argument="since", refetch=True
            )
        if now - token.moment > retention_days * _DAY:
            raise SyncTokenExpiredError(
                f"This sync token is older than the {retention_days} days of history kept: {refetch}",
                argument="since",
                refetch=True,
                retentionDays=retention_days,
            )
        return token


async def resolve_changes(
    info: Info,
    since: SyncToken | None = None,
    first: int | None = DEFAULT_PAGE,
) -> ChangeFeed:
    viewer = info.context.viewer
    size = DEFAULT_PAGE if first is None else first
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise BadUserInputError(
            f"'first' must be 0 to {MAX_PAGE_SIZE}, got {size}", argument="first", maximum=MAX_PAGE_SIZE
        )
    settings = info.context.settings
    issuer = _Issuer(settings.jwt_secret, viewer)
    now = int(time.time())
    if since is None:
        # A client with nothing starts at the end of the log, then loads its screens: whatever commits
        # after this point comes in its next sync (upserts are safe to apply over a fresh screen).
        horizon = await fetch_horizon(info.context.db)
        return ChangeFeed(changes=[], next_token=issuer.token(Position(horizon, 0), now), has_more=False)
    token = issuer.verify(since, settings.sync_retention_days, now)
    page = await fetch_changes(info.context.db, _scope(viewer), token.position, size + 1)
    delivered = page.rows[:size]
    if len(page.rows) > size:
        # Mid-backlog: the position moves, the moment does not (the rest is as old as it was).
        position = delivered[-1].position if delivered else token.position
        return ChangeFeed(changes=delivered, next_token=issuer.token(position, token.moment), has_more=True)  # type: ignore[arg-type]
    # Caught up: everything below the horizon was delivered; never move back (a lagging replica).
    position = max(token.position, Position(page.horizon, 0))
    return ChangeFeed(changes=delivered, next_token=issuer.token(position, now), has_more=False)  # type: ignore[arg-type]
