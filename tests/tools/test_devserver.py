"""`make run` up to the point of serving, the embedded PostgreSQL, and the Docker/compose files."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
import yaml

from mlc_graph.platform.auth import Role, decode_token
from mlc_graph.platform.config import PoolSettings, Settings
from mlc_graph.platform.db import create_pool
from mlc_graph.tools.devserver import STUDENT_QUERY, TEACHER_QUERY, DemoDataError, main, prepare
from mlc_graph.tools.embedded import start_embedded
from mlc_graph.tools.seed import TRUNCATE_ALL
from tests.support.graphql_client import principal, run
from tests.tools.test_seed import DEMO_COUNTS, connect, table_counts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def demo_url(database_url: str) -> AsyncIterator[str]:
    """The run's database, emptied first (prepare() seeds it) and afterwards (no rows leak to others)."""
    async with connect(database_url) as conn:
        await conn.execute(TRUNCATE_ALL)
    yield database_url
    async with connect(database_url) as conn:
        await conn.execute(TRUNCATE_ALL)


async def test_make_run_flow_migrates_seeds_once_and_mints_working_tokens(
    demo_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with connect(demo_url) as conn:
        await conn.execute(TRUNCATE_ALL)
    monkeypatch.setenv("DATABASE_URL", demo_url)
    # main() owns its event loop (asyncio.run), so it runs in a worker thread here.
    assert await asyncio.to_thread(main, ["--prepare-only"]) == 0
    out = capsys.readouterr().out
    assert "using the PostgreSQL server in DATABASE_URL" in out
    assert "seeded the demo data" in out
    assert re.search(r"teacher token:\s+\S+\.\S+\.\S+", out)

    # A second start finds the data and leaves it alone.
    settings = replace(Settings(), database_url=demo_url, host="0.0.0.0", port=8123)  # noqa: S104
    info = await prepare(settings, progress=False)
    assert not info.seeded
    assert info.graphiql_url == "http://127.0.0.1:8123/graphql"
    assert info.graphiql_link(info.teacher_token).endswith(f"?token={info.teacher_token}")
    assert info.teacher_token in info.banner()
    assert info.student_token in info.banner()
    async with connect(demo_url) as conn:
        assert await table_counts(conn) == DEMO_COUNTS

    teacher = decode_token(settings.jwt_secret, info.teacher_token)
    student = decode_token(settings.jwt_secret, info.student_token)
    assert (teacher.role, teacher.user_id, teacher.org_id) == (Role.TEACHER, info.teacher_id, info.org_id)
    assert (student.role, student.user_id, student.org_id) == (Role.STUDENT, info.student_id, info.org_id)
    async with connect(demo_url) as conn:
        row = await conn.fetchrow("SELECT teacher_id, status FROM students WHERE id = $1", info.student_id)
    assert row is not None
    assert (row["teacher_id"], row["status"]) == (info.teacher_id, "active")


async def test_the_banner_queries_return_demo_data(demo_url: str) -> None:
    info = await prepare(replace(Settings(), database_url=demo_url), progress=False)
    pool = await create_pool(demo_url, PoolSettings(min_size=1, max_size=4))
    try:
        as_teacher = principal("teacher", info.teacher_id, info.org_id)
        result, _ = await run(pool, TEACHER_QUERY, viewer=as_teacher)
        assert result.errors is None
        assert result.data is not None
        assert result.data["viewer"]["teacher"]["students"]["totalCount"] == 20

        as_student = principal("student", info.student_id, info.org_id)
        result, _ = await run(pool, STUDENT_QUERY, viewer=as_student)
        assert result.errors is None
        assert result.data is not None
        assert result.data["viewer"]["student"]["scores"]["edges"]
    finally:
        await pool.close()


async def test_prepare_refuses_data_without_a_teacher(demo_url: str) -> None:
    async with connect(demo_url) as conn:
        await conn.execute(TRUNCATE_ALL)
        await conn.execute("INSERT INTO categories (name) VALUES ('Only a category')")
        try:
            with pytest.raises(DemoDataError, match="--reset"):
                await prepare(replace(Settings(), database_url=demo_url), progress=False)
        finally:
            # Empty again, so the next prepare() seeds afresh.
            await conn.execute(TRUNCATE_ALL)


@pytest.mark.slow
async def test_embedded_postgres_starts_answers_and_stops() -> None:
    # As root, pgserver runs PostgreSQL as its own `pgserver` system user and opens up the directories
    # above the data directory (see mlc_graph/tools/embedded.py): a directory of its own under /tmp keeps that
    # away from pytest's private tmp tree.
    parent = Path(tempfile.mkdtemp(prefix="mlc-embedded-"))
    try:
        server = await asyncio.to_thread(start_embedded, parent / "pgdata", delete_on_stop=True)
        try:
            conn = await asyncpg.connect(server.url)
            try:
                assert await conn.fetchval("SELECT 1") == 1
                assert int(await conn.fetchval("SHOW server_version_num")) >= 150000
            finally:
                await conn.close()
        finally:
            await asyncio.to_thread(server.stop)
        assert not (parent / "pgdata").exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


async def test_the_command_line_reaches_the_embedded_database_through_its_url_file() -> None:
    """Issue 12 item 22: while `make run` serves the embedded database, `.mlc/database-url` names it."""
    parent = Path(tempfile.mkdtemp(prefix="mlc-embedded-"))
    try:
        server = await asyncio.to_thread(start_embedded, parent / "pgdata", delete_on_stop=True)
        try:
            url_file = server.publish_url()
            assert url_file == parent / "database-url"
            env = {**os.environ, "DATABASE_URL": url_file.read_text().strip()}
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "mlc_graph.cli", "migrate"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("applied: 0001_core")
        finally:
            await asyncio.to_thread(server.stop)
        assert not url_file.exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _compose() -> dict[str, object]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_runs_app_beside_postgres_15_and_redis_7() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    app = services["app"]
    assert (ROOT / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    command = " ".join(app["command"]) if isinstance(app["command"], list) else app["command"]
    assert command.index("mlc-graph migrate") < command.index("mlc-graph serve")
    assert set(app["depends_on"]) == {"postgres", "redis"}
    assert app["environment"]["DATABASE_URL"].endswith("@postgres:5432/mlc")
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:6379")


def test_dockerfile_builds_assets_and_runs_unprivileged_with_a_healthcheck() -> None:
    # One instruction per line: fold the backslash continuations.
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    assert re.search(r"^FROM python:3\.11-slim AS build$", text, re.MULTILINE)
    assert "python -m mlc_graph.http.assets" in text
    assert "pip install '.[otel]'" in text, "MLC_TRACING=1 needs the otel extra in the image"
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*/healthz", text, re.MULTILINE)
    assert re.search(r'^CMD \["mlc-graph", "serve"\]', text, re.MULTILINE)
    # Everything the build copies from the context exists (and is not excluded by .dockerignore).
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for match in re.finditer(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in match.group(1).split():
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, source
    assert {".venv", ".mlc", ".git"} <= ignored


async def test_main_explains_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert await asyncio.to_thread(main, ["--prepare-only"]) == 1
    assert "cannot prepare the database" in capsys.readouterr().err


def test_every_package_on_disk_ships_in_the_wheel() -> None:
    """The image installs a wheel: a package missing from the build config fails only there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    packages = {
        init.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for top in ("mlc_graph", "resolvers", "loaders")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert "mlc_graph.platform.migrations" in packages
    for package in packages:
        assert any(fnmatch.fnmatchcase(package, pattern) for pattern in include), package
