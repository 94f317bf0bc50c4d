"""GraphQL enums. Members are str-valued so database strings serialize without a conversion step."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum
class Role(str, enum.Enum):
    STUDENT = "STUDENT"
    TEACHER = "TEACHER"
    ADMIN = "ADMIN"


@strawberry.enum
class Tier(str, enum.Enum):
    PRELUDE = "PRELUDE"
    SOLO = "SOLO"
    ENSEMBLE = "ENSEMBLE"


@strawberry.enum
class StudentStatus(str, enum.Enum):
    ACTIVE = "active"
    INACTIVE = "inactive"


@strawberry.enum
class GameStatus(str, enum.Enum):
    LIVE = "live"
    DRAFT = "draft"
    RETIRED = "retired"


@strawberry.enum
class Difficulty(str, enum.Enum):
    BEGINNER = "BEGINNER"
    INTERMEDIATE = "INTERMEDIATE"
    ADVANCED = "ADVANCED"


@strawberry.enum
class AssignmentStatus(str, enum.Enum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ARCHIVED = "archived"


@strawberry.enum
class ScoreStage(str, enum.Enum):
    PRACTICE = "practice"
    CHALLENGE = "challenge"


@strawberry.enum
class LeaderboardScope(str, enum.Enum):
    CLASS = "CLASS"
    ORGANIZATION = "ORGANIZATION"
    GLOBAL = "GLOBAL"
