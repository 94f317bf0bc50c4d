"""Organizations by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loaders.base import by_id
from mlc_graph.platform.db import Executor

SELECT_ORGANIZATIONS_BY_IDS = """
SELECT id, name, tier, seat_count, created_at FROM organizations WHERE id = ANY($1::bigint[])
"""


@dataclass(slots=True, unsafe_hash=True)  # a row: see loaders/base.py ROWS
class OrganizationRow:
    id: int
    name: str
    tier: str
    seat_count: int
    created_at: datetime


async def fetch_organizations_by_ids(db: Executor, ids: Sequence[int]) -> list[OrganizationRow | None]:
    rows = await db.fetch(SELECT_ORGANIZATIONS_BY_IDS, list(ids))
    return by_id([OrganizationRow(**r) for r in rows], ids)
