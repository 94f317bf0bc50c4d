"""Delta sync reads: one page of the change log for a viewer's scope, with each upsert's current node.

Exactness (see 0005_sync_changes.sql): rows are read in (xid, seq) order and only below the horizon,
the xmin of this very statement's snapshot (`pg_current_snapshot()` is the active snapshot of the
statement that calls it). Every transaction with a smaller xid has ended, so the log below the horizon
is final: a position that stays below it can be resumed without missing or repeating a row, whatever
commits meanwhile and in whatever order.

One statement per page whatever it holds: the page, the horizon and the current row of every upserted
entity (joined by kind) come back together; nested fields the client selects go through the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loaders.assignments import AssignmentRow
from loaders.badges import BadgeRow, EarnedBadgeRow
from loaders.games import GameRow
from loaders.scores import BestScoreRow, ScoreRow
from loaders.students import StudentRow
from mlc_graph.domain.sync_tokens import Position
from mlc_graph.platform.db import Executor

# The horizon: the xmin of this statement's snapshot, the oldest transaction of the cluster still running
# (or the next xid when none is). A transaction of another database on the same cluster holds it back
# too: a snapshot cannot tell them apart, and pg_stat_activity, which can, is not read atomically with
# the snapshot (a reused backend slot could pair one database's id with another's transaction), so
# leaving such transactions out could skip a row. A lower horizon only delays delivery.
SELECT_HORIZON_XID = "SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin"
SELECT_HORIZON = f"SELECT xmin::text FROM ({SELECT_HORIZON_XID}) AS horizon"  # noqa: S608

# $1 the scope's id, $2/$3 the position (xid as text, seq), $4 the row limit, $5 the organization.
# The scope's own changes and the shared catalogue's are two index range scans, merged.
_PAGE = f"""
WITH horizon AS ({SELECT_HORIZON_XID}),
page AS (
    SELECT * FROM (
        (SELECT c.seq, c.xid, c.org_id, c.entity, c.entity_id, c.entity_at, c.student_id, c.tombstone,
                c.changed_at
         FROM sync_changes c
         WHERE {{scope}} AND (c.xid, c.seq) > ($2::text::xid8, $3::bigint)
           AND c.xid < (SELECT xmin FROM horizon)
         ORDER BY c.xid, c.seq LIMIT $4)
        UNION ALL
        (SELECT c.seq, c.xid, c.org_id, c.entity, c.entity_id, c.entity_at, c.student_id, c.tombstone,
                c.changed_at
         FROM sync_changes c
         WHERE c.org_id = 0 AND (c.xid, c.seq) > ($2::text::xid8, $3::bigint)
           AND c.xid < (SELECT xmin FROM horizon)
         ORDER BY c.xid, c.seq LIMIT $4)
    ) both_scopes
    ORDER BY xid, seq LIMIT $4
)
SELECT h.xmin::text AS horizon, p.seq, p.xid::text AS xid, p.entity, p.entity_id, p.student_id,
       p.tombstone, p.changed_at,
       CASE WHEN a.id IS NOT NULL THEN ROW(a.id, a.org_id, a.student_id, a.game_id, a.teacher_id, a.status,
                                           a.due_date, a.created_at, a.completed_at) END AS assignment,
       CASE WHEN sc.id IS NOT NULL THEN ROW(sc.id, sc.org_id, sc.student_id, sc.game_id, sc.score, sc.stage,
                                            sc.created_at) END AS score,
       CASE WHEN b.game_id IS NOT NULL THEN ROW(b.student_id, b.game_id, b.score, b.achieved_at) END AS best,
       CASE WHEN sb.badge_id IS NOT NULL THEN ROW(bd.id, bd.name, bd.description, bd.icon_url) END AS badge,
       sb.awarded_at,
       CASE WHEN st.id IS NOT NULL THEN ROW(st.id, st.org_id, st.teacher_id, st.first_name, st.last_name,
                                            st.username, st.avatar_url, st.status, st.last_active_at,
                                            st.created_at) END AS student,
       CASE WHEN g.id IS NOT NULL THEN ROW(g.id, g.title, g.description, g.category_id, g.level_id,
                                           g.difficulty, g.status, g.thumbnail_url, g.min_score, g.max_score,
                                           g.created_at) END AS game
FROM horizon h
LEFT JOIN page p ON true
LEFT JOIN assignments a
    ON p.entity = 'Assignment' AND NOT p.tombstone AND a.id = p.entity_id AND a.org_id = p.org_id
LEFT JOIN scores sc
    ON p.entity = 'Score' AND NOT p.tombstone AND sc.id = p.entity_id AND sc.created_at = p.entity_at
       AND sc.org_id = p.org_id
LEFT JOIN best_scores b
    ON p.entity = 'BestScore' AND NOT p.tombstone AND b.game_id = p.entity_id AND b.student_id = p.student_id
       AND b.org_id = p.org_id
LEFT JOIN student_badges sb
    ON p.entity = 'EarnedBadge' AND NOT p.tombstone AND sb.badge_id = p.entity_id
       AND sb.student_id = p.student_id AND sb.org_id = p.org_id
LEFT JOIN badges bd ON bd.id = sb.badge_id
LEFT JOIN students st
    ON p.entity = 'Student' AND NOT p.tombstone AND st.id = p.entity_id AND st.org_id = p.org_id
LEFT JOIN games g ON p.entity = 'Game' AND NOT p.tombstone AND g.id = p.entity_id AND p.org_id = 0
ORDER BY p.xid, p.seq
"""  # noqa: S608
SELECT_STUDENT_CHANGES = _PAGE.format(scope="c.student_id = $1 AND c.org_id = $5")
SELECT_TEACHER_CHANGES = _PAGE.format(scope="c.teacher_id = $1 AND c.org_id = $5")
SELECT_ORGANIZATION_CHANGES = _PAGE.format(scope="c.org_id = $1")

Node = AssignmentRow | ScoreRow | BestScoreRow | EarnedBadgeRow | StudentRow | GameRow


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One change; `node` is the entity as it is now (None for a tombstone, or when it is gone)."""

    position: Position
    entity: str
    entity_id: int
    student_id: int | None
    tombstone: bool
    changed_at: datetime
    node: Node | None


@dataclass(frozen=True, slots=True)
class ChangePage:
    rows: list[ChangeRow]
    horizon: int  # every transaction below this id had ended when the page was read


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose changes: a student's own, a teacher's class, or an organization (admins)."""

    kind: str  # "student", "teacher" or "organization"
    id: int
    org_id: int


_BY_SCOPE = {
    "student": SELECT_STUDENT_CHANGES,
    "teacher": SELECT_TEACHER_CHANGES,
    "organization": SELECT_ORGANIZATION_CHANGES,
}


def _node(r: Any) -> Node | None:
    if r["assignment"] is not None:
        return AssignmentRow(*r["assignment"])
    if r["score"] is not None:
        return ScoreRow(*r["score"])
    if r["best"] is not None:
        return BestScoreRow(*r["best"])
    if r["badge"] is not None:
        return EarnedBadgeRow(r["student_id"], BadgeRow(*r["badge"]), r["awarded_at"])
    if r["student"] is not None:
        return StudentRow(*r["student"])
    if r["game"] is not None:
        return GameRow(*r["game"])
    return None


async def fetch_horizon(db: Executor) -> int:
    """The log's readable end now: where a client that starts from nothing begins."""
    return int(await db.fetchval(SELECT_HORIZON))


async def fetch_changes(db: Executor, scope: Scope, after: Position, limit: int) -> ChangePage:
    """Up to `limit` changes of the scope (and the catalogue) after `after`, oldest first."""
    params: list[object] = [scope.id, str(after.xid), after.seq, limit]
    if scope.kind != "organization":
        params.append(scope.org_id)
    records = await db.fetch(_BY_SCOPE[scope.kind], *params)
    rows = [
        ChangeRow(
            Position(int(r["xid"]), r["seq"]),
            r["entity"],
            r["entity_id"],
            r["student_id"],
            r["tombstone"],
            r["changed_at"],
            _node(r),
        )
        for r in records
        if r["seq"] is not None  # the horizon's own row when the page is empty
    ]
    return ChangePage(rows, int(records[0]["horizon"]))
