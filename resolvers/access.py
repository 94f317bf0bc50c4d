"""Tenant isolation in one place: what the viewer may see, and 'not found' for everything else."""

from __future__ import annotations

from loaders.assignments import AssignmentRow
from loaders.games import GameRow
from loaders.organizations import OrganizationRow
from loaders.scores import ScoreRow
from loaders.students import StudentRow
from loaders.teachers import TeacherRow
from mlc_graph.platform.auth import Principal, Role


def see_student(viewer: Principal, row: StudentRow | None) -> StudentRow | None:
    return row if row is not None and viewer.can_see_student(row.id, row.org_id) else None


def see_teacher(viewer: Principal, row: TeacherRow | None) -> TeacherRow | None:
    return row if row is not None and viewer.can_see_org(row.org_id) else None


def see_organization(viewer: Principal, row: OrganizationRow | None) -> OrganizationRow | None:
    return row if row is not None and viewer.can_see_org(row.id) else None


def see_assignment(viewer: Principal, row: AssignmentRow | None) -> AssignmentRow | None:
    return row if row is not None and viewer.can_see_student(row.student_id, row.org_id) else None


def see_score(viewer: Principal, row: ScoreRow | None) -> ScoreRow | None:
    return row if row is not None and viewer.can_see_student(row.student_id, row.org_id) else None


def see_game(viewer: Principal, row: GameRow | None) -> GameRow | None:
    """The catalogue is shared; drafts are for admins only."""
    if row is None or (row.status == "draft" and viewer.role is not Role.ADMIN):
        return None
    return row
