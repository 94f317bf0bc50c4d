"""The schema: root types assembled from the domain modules."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig

from resolvers.assignment_writes import AssignmentMutation
from resolvers.assignments import Assignment
from resolvers.badges import Badge
from resolvers.changes import SYNC_TOKEN_SCALAR, ChangeFeed, SyncToken, resolve_changes
from resolvers.directives import CacheControl, CacheControlScope, Cost, ListSize
from resolvers.games import (
    CATALOGUE_MAX_AGE,
    GAMES_MAX_AGE,
    Category,
    Game,
    GameFilter,
    Level,
    resolve_categories,
    resolve_games,
)
from resolvers.info import Info
from resolvers.leaderboards import Leaderboard, resolve_leaderboard
from resolvers.organizations import Organization
from resolvers.realtime import RealtimeMutation, Subscription
from resolvers.relay import Connection, Node, expect_global_id
from resolvers.reports import ClassProgress, resolve_class_progress
from resolvers.score_writes import ScoreMutation
from resolvers.scores import Score
from resolvers.student_imports import StudentImportMutation
from resolvers.students import Student
from resolvers.teachers import Teacher
from resolvers.viewer import Viewer, _game, _student, _teacher, resolve_node, resolve_viewer
from resolvers.web_vitals import WebVitalsMutation, WebVitalSummary, resolve_web_vitals

# Types reachable only through the Node interface must be named for the schema to include them.
NODE_TYPES: list[Any] = [Student, Teacher, Organization, Game, Category, Level, Assignment, Score, Badge]


async def resolve_student(info: Info, id: strawberry.ID) -> Student | None:
    found: Student | None = await _student(info, expect_global_id(id, "Student"))
    return found


async def resolve_teacher(info: Info, id: strawberry.ID) -> Teacher | None:
    found: Teacher | None = await _teacher(info, expect_global_id(id, "Teacher"))
    return found


async def resolve_game(info: Info, id: strawberry.ID) -> Game | None:
    found: Game | None = await _game(info, expect_global_id(id, "Game"))
    return found


@strawberry.type
class Query:
    node: Node | None = strawberry.field(resolver=resolve_node, description="Any object by its global id.")
    viewer: Viewer = strawberry.field(resolver=resolve_viewer, description="The signed-in user.")
    student: Student | None = strawberry.field(resolver=resolve_student)
    teacher: Teacher | None = strawberry.field(resolver=resolve_teacher)
    # PRIVATE: admins also see draft games by id, so the answer depends on who asks.
    game: Game | None = strawberry.field(
        resolver=resolve_game,
        directives=[CacheControl(max_age=GAMES_MAX_AGE, scope=CacheControlScope.PRIVATE)],
    )
    # The library and the categories are live rows only, the same for every caller: shared caches may
    # serve them (docs/HTTP.md, "HTTP caching").
    games: Connection[Game] = strawberry.field(
        resolver=resolve_games,
        description="The live game library, newest first.",
        directives=[ListSize(slicing_arguments=["first"]), CacheControl(max_age=GAMES_MAX_AGE)],
    )
    # Priced as 20 categories: the catalogue has 8 and grows slowly.
    categories: list[Category] = strawberry.field(
        resolver=resolve_categories,
        directives=[ListSize(assumed_size=20), CacheControl(max_age=CATALOGUE_MAX_AGE)],
    )
    # Costs: a ranked read over best scores (10), a report that aggregates a whole class (100).
    leaderboard: Leaderboard = strawberry.field(
        resolver=resolve_leaderboard,
        description="Best challenge scores of a game, ranked.",
        directives=[Cost(weight=10), ListSize(slicing_arguments=["first"], sized_fields=["entries"])],
    )
    class_progress: ClassProgress = strawberry.field(
        resolver=resolve_class_progress,
        description="Per-student progress of a teacher's class (a report).",
        directives=[Cost(weight=100)],
    )
    # Priced like a connection: `first` changes, each with its node.
    changes: ChangeFeed = strawberry.field(
        resolver=resolve_changes,
        description="Delta sync: what changed in the viewer's scope since a token (null: start now).",
        directives=[ListSize(slicing_arguments=["first"], sized_fields=["changes"])],
    )
    web_vitals: list[WebVitalSummary] = strawberry.field(
        resolver=resolve_web_vitals,
        description="Real-user performance of a page since a time: per metric p75 and rating shares (staff).",
    )


@strawberry.type
class Mutation(RealtimeMutation, ScoreMutation, AssignmentMutation, StudentImportMutation, WebVitalsMutation):
    """Every write: each domain contributes its mutations by inheritance."""


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=NODE_TYPES,
    config=StrawberryConfig(scalar_map={SyncToken: SYNC_TOKEN_SCALAR}),
)


def schema_sdl() -> str:
    """The SDL that schema.graphql must equal."""
    return print_schema(schema) + "\n"


__all__ = ["GameFilter", "schema", "schema_sdl"]
