"""Migrations: idempotent, recorded, tamper-evident; the spec's indexes and the monthly score partitions."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from datetime import UTC, date, datetime

import asyncpg
import pytest

import loaders
from mlc_graph.platform.migrate import MigrationError, load_migrations, migrate, partition_months
from tests.support.plans import plan_nodes

# The product spec's indexes that queries use, verbatim: name -> (table, key columns, partial predicate or
# None); and the one that replaced a spec index no query could use (0006_index_fit.sql, docs/DATA.md).
SPEC_INDEXES = {
    "idx_assignments_student_status": ("assignments", "student_id, status, due_date", None),
    "idx_scores_student_game_created": ("scores", "student_id, game_id, created_at DESC", None),
    "idx_games_category_difficulty_level": (
        "games",
        "category_id, difficulty, level_id",
        "(status = 'live'::text)",
    ),
    "idx_students_teacher_active_name": (
        "students",
        "teacher_id, last_name, first_name, id",
        "(status = 'active'::text)",
    ),
}
# The spec's indexes that no query used, dropped by 0006_index_fit.sql.
DROPPED_SPEC_INDEXES = (
    "idx_games_status_category",
    "idx_scores_game_score_created",
    "idx_students_teacher_org",
)
SELECT_INDEXDEF = (
    "SELECT pg_get_indexdef(c.oid) FROM pg_class c WHERE c.relname = $1 AND c.relkind IN ('i', 'I')"
)
SELECT_SCORE_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'scores'::regclass
"""
# For one parent index of scores: the tables its attached child indexes belong to.
SELECT_INDEXED_PARTITIONS = """
SELECT t.relname FROM pg_inherits i
JOIN pg_index x ON x.indexrelid = i.inhrelid
JOIN pg_class t ON t.oid = x.indrelid
WHERE i.inhparent = $1::regclass
"""


def _month_name(day: date) -> str:
    return f"scores_{day:%Y_%m}"


async def test_second_migrate_applies_nothing_and_runs_are_recorded(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn) == []
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
    finally:
        await conn.close()
    recorded = {r["name"]: r["checksum"] for r in rows}
    expected = {m.name: m.checksum for m in load_migrations()}
    assert expected
    assert recorded == expected


async def test_edited_migration_is_refused(database_url: str) -> None:
    first = load_migrations()[0].name
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            # Equivalent to editing the file after it was applied: the recorded checksum no longer matches.
            await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE name = $1", first)
            with pytest.raises(MigrationError, match=first):
                await migrate(conn)
        finally:
            await tx.rollback()
    finally:
        await conn.close()


@pytest.mark.parametrize("name", sorted(SPEC_INDEXES))
async def test_spec_index_exists_verbatim(pool: asyncpg.Pool, name: str) -> None:
    table, columns, predicate = SPEC_INDEXES[name]
    definition = await pool.fetchval(SELECT_INDEXDEF, name)
    assert definition is not None, f"index {name} is missing"
    # Partitioned tables report "ON ONLY": the index is defined on the parent and cascades to partitions.
    pattern = rf"CREATE INDEX {name} ON (ONLY )?public\.{table} USING btree \({re.escape(columns)}\)"
    if predicate is None:
        assert re.fullmatch(pattern, definition), definition
    else:
        assert re.fullmatch(pattern + re.escape(f" WHERE {predicate}"), definition), definition


@pytest.mark.parametrize("name", DROPPED_SPEC_INDEXES)
async def test_spec_index_no_query_used_is_gone(pool: asyncpg.Pool, name: str) -> None:
    assert await pool.fetchval(SELECT_INDEXDEF, name) is None


async def test_monthly_partitions_exist_and_carry_every_scores_index(pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).date()
    partitions = {r["relname"] for r in await pool.fetch(SELECT_SCORE_PARTITIONS)}
    expected = {_month_name(month) for month in partition_months(today, back=24, ahead=3)}
    assert expected <= partitions
    parent_indexes = [
        r["indexname"]
        for r in await pool.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'scores'")
    ]
    assert {"idx_scores_student_game_created", "idx_scores_student_created"} <= set(parent_indexes)
    for index in parent_indexes:
        indexed = {r["relname"] for r in await pool.fetch(SELECT_INDEXED_PARTITIONS, index)}
        assert indexed == partitions, f"{index} is missing on {partitions - indexed}"


def _scanned_partitions(plan_json: str) -> set[str]:
    """Every table the plan reads ("Relation Name" at any depth of the JSON plan)."""
    return {node["Relation Name"] for node in plan_nodes(json.loads(plan_json)) if "Relation Name" in node}


async def test_created_at_range_prunes_to_matching_partitions(pool: asyncpg.Pool) -> None:
    months = partition_months(datetime.now(UTC).date(), back=3, ahead=0)
    one, two = months[0], months[1]
    end = months[2]
    single = await pool.fetchval(
        "EXPLAIN (FORMAT JSON) SELECT id, score FROM scores WHERE student_id = 1 AND created_at >= $1 AND created_at < $2",
        datetime(one.year, one.month, 1, tzinfo=UTC),
        datetime(two.year, two.month, 1, tzinfo=UTC),
    )
    assert _scanned_partitions(single) == {_month_name(one)}
    both = await pool.fetchval(
        "EXPLAIN (FORMAT JSON) SELECT id, score FROM scores WHERE created_at >= $1 AND created_at < $2",
        datetime(one.year, one.month, 10, tzinfo=UTC),
        datetime(end.year, end.month, 1, tzinfo=UTC),
    )
    assert _scanned_partitions(both) == {_month_name(one), _month_name(two)}


# Writes may name the columns (an import stores emails); what they return is checked below instead.
_WRITES = re.compile(r"\b(insert|update|delete)\b", re.IGNORECASE)


def _loader_statements() -> dict[str, str]:
    """Every SQL constant (UPPER_CASE str containing SELECT) of every module in loaders/."""
    statements: dict[str, str] = {}
    for module_info in pkgutil.iter_modules(loaders.__path__):
        module = importlib.import_module(f"loaders.{module_info.name}")
        for attr, value in vars(module).items():
            if attr.lstrip("_").isupper() and isinstance(value, str) and "select" in value.lower():
                statements[f"loaders.{module_info.name}.{attr}"] = value
    return statements


async def test_secret_columns_exist_but_no_loader_sql_selects_them(pool: asyncpg.Pool) -> None:
    columns = {
        (r["table_name"], r["column_name"])
        for r in await pool.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE column_name IN ('password_hash', 'email')"
        )
    }
    assert {("students", "password_hash"), ("students", "email"), ("teachers", "email")} <= columns

    statements = _loader_statements()
    assert len(statements) > 10, "expected the loaders' SQL constants to be found"
    reads = {where: sql.lower() for where, sql in statements.items() if not _WRITES.search(sql)}
    assert len(reads) > 10
    for where, sql in reads.items():
        assert "password_hash" not in sql, where
        assert not re.search(r"\bemail\b", sql), where


async def test_no_loader_statement_returns_a_secret_column(pool: asyncpg.Pool) -> None:
    """Ask PostgreSQL for each statement's result columns, which also catches a `*` on a secret table."""
    described = 0
    async with pool.acquire() as conn:
        for where, sql in _loader_statements().items():
            if "{" in sql:  # a template completed at import into the constants also checked here
                continue
            statement = await conn.prepare(sql)
            names = {attribute.name for attribute in statement.get_attributes()}
            assert not names & {"password_hash", "email"}, where
            described += 1
    assert described > 10
