"""`mlc-graph import-students FILE --teacher N`: the importStudents mutation's code, from a terminal.

The operator running it is trusted like an admin of the teacher's organization. Exit status: 0 imported,
1 refused (row errors, quota, unknown teacher), 2 unreadable file or header.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tqdm import tqdm

from loaders.student_imports import ImportCounts, import_students
from mlc_graph.domain.roster import HeaderError, StudentInput, parse_roster
from mlc_graph.domain.tiers import tiers_in_effect
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import Executor, QueryStats, create_pool
from mlc_graph.platform.db_errors import client_errors
from mlc_graph.platform.errors import ApiError


async def _import(settings: Settings, teacher_id: int, students: list[StudentInput]) -> ImportCounts:
    pool = await create_pool(settings.direct_url, PoolSettings(min_size=1, max_size=1))
    try:
        db = Executor(pool, QueryStats())
        # A bar only on a terminal: in a log or a pipe its redraws become a heap of mangled lines.
        bar_off = not sys.stderr.isatty()
        with tqdm(
            total=len(students), unit="student", desc="importing", file=sys.stderr, disable=bar_off
        ) as bar:

            def advance(rows: int) -> None:
                bar.update(rows)

            async with client_errors(), db.transaction() as tx:
                tiers = tiers_in_effect(settings.tier_overrides)
                return await import_students(tx, teacher_id, students, tiers, on_chunk=advance)
    finally:
        await pool.close()


def import_students_command(settings: Settings, path: str, teacher_id: int) -> int:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    try:
        roster = parse_roster(text)
    except HeaderError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if roster.errors:
        for error in roster.errors:
            where = f"row {error.row}" + (f", {error.column}" if error.column else "")
            print(f"{where}: {error.message}", file=sys.stderr)
        print(f"nothing imported: {len(roster.errors)} problem(s) to fix", file=sys.stderr)
        return 1
    try:
        counts = asyncio.run(_import(settings, teacher_id, roster.students))
    except ApiError as exc:
        details = {k: v for k, v in (exc.extensions or {}).items() if k != "code"}
        code = (exc.extensions or {}).get("code")
        print(
            f"nothing imported: {exc.message} [{code}]" + (f" {details}" if details else ""), file=sys.stderr
        )
        return 1
    print(f"created {counts.created}, skipped {counts.skipped} existing username(s)")
    return 0
