"""Who may write: the checks every mutation shares."""

from __future__ import annotations

from mlc_graph.platform.auth import Principal, Role
from mlc_graph.platform.errors import ForbiddenError


def require_staff(viewer: Principal, action: str) -> None:
    """Teachers and admins only; students get FORBIDDEN (they are signed in, just not allowed)."""
    if viewer.role is Role.STUDENT:
        raise ForbiddenError(f"Only teachers and admins may {action}")
