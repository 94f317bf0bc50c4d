"""Badges: achievements students earn."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from loaders.badges import BadgeRow, EarnedBadgeRow
from resolvers.relay import Node, global_id_field


@strawberry.type(description="An achievement a student can earn.")
class Badge(Node):
    id: strawberry.ID = global_id_field("Badge")
    name: str
    description: str
    icon_url: str | None

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, BadgeRow)


@strawberry.type(description="A badge a student earned, and when.")
class EarnedBadge:
    badge: Badge
    awarded_at: dt.datetime

    @classmethod
    def is_type_of(cls, obj: Any, info: Any) -> bool:
        return isinstance(obj, EarnedBadgeRow)
