"""Where the test PostgreSQL and Redis are, and the tables every test empties."""

from __future__ import annotations

import os

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

TENANT_TABLES = (
    "student_badges, badges, best_scores, scores, assignments, games, levels, categories, "
    "students, teachers, organizations, sync_changes"
)


def url_for(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"
