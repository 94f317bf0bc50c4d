"""GraphQL enums. Members are str-valued so database strings serialize without a conversion step."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum
class Role(enum.StrEnum):
    STUDENT = "STUDENT"
    TEACHER = "TEACHER"
    ADMIN = "ADMIN"


@strawberry.enum
class Tier(enum.StrEnum):
    PRELUDE = "PRELUDE"
    SOLO = "SOLO"
    ENSEMBLE = "ENSEMBLE"


@strawberry.enum
class StudentStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


@strawberry.enum
class GameStatus(enum.StrEnum):
    LIVE = "live"
    DRAFT = "draft"
    RETIRED = "retired"


@strawberry.enum
class Difficulty(enum.StrEnum):
    BEGINNER = "BEGINNER"
    INTERMEDIATE = "INTERMEDIATE"
    ADVANCED = "ADVANCED"


@strawberry.enum
class AssignmentStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ARCHIVED = "archived"


@strawberry.enum
class ScoreStage(enum.StrEnum):
    PRACTICE = "practice"
    CHALLENGE = "challenge"


@strawberry.enum
class LeaderboardScope(enum.StrEnum):
    CLASS = "CLASS"
    ORGANIZATION = "ORGANIZATION"
    GLOBAL = "GLOBAL"


@strawberry.enum(description="The two hourly quotas, named as the policies of the RateLimit-Policy header.")
class RateLimitQuotaName(enum.StrEnum):
    REQUESTS = "requests"
    POINTS = "points"
