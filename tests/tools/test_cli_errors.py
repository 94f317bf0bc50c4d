"""Issue 12 item 23: the command line's first-run problems are one line that says what to do, not a
traceback; progress bars only on a terminal; a busy port is reported before (instead of) the banner."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from mlc_graph import cli
from mlc_graph.platform.config import Settings
from tests.support import database, factories
from tests.support.http import ROOT, free_port


def _run(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def nowhere() -> str:
    """A database URL on a port where nothing listens."""
    return f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/mlc"


# Every command whose database errors reach the one-line refusal; all connect to the direct URL.
DIRECT_COMMANDS = [
    ["migrate"],
    ["maintain"],
    ["import-students", "ROSTER", "--teacher", "1"],
    ["persist", "DOCUMENT"],
]


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def _args(command: list[str], tmp_path: Path) -> list[str]:
    roster = tmp_path / "roster.csv"
    roster.write_text("first_name,last_name,username\nAda,Lovelace,ada\n")
    document = tmp_path / "ops.graphql"
    document.write_text("query Me { viewer { role } }\n")
    return [str(roster) if a == "ROSTER" else str(document) if a == "DOCUMENT" else a for a in command]


@pytest.mark.parametrize("command", DIRECT_COMMANDS)
def test_a_database_that_is_down_is_one_line_with_what_to_do(
    command: list[str], nowhere: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": nowhere, "MLC_DIRECT_DATABASE_URL": ""}  # unset: they fall back to DATABASE_URL
    done = _run(["-m", "mlc_graph.cli", *_args(command, tmp_path)], env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cannot reach the database at 127.0.0.1:{_port(nowhere)}/mlc (")
    assert "start PostgreSQL, or set DATABASE_URL" in lines[0]
    assert ".mlc/database-url" in lines[0]
    assert "s3cret" not in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", DIRECT_COMMANDS)
def test_a_direct_database_that_is_down_is_named_not_database_url(
    command: list[str], nowhere: str, database_url: str, tmp_path: Path
) -> None:
    """Behind PgBouncer these commands connect to MLC_DIRECT_DATABASE_URL: the line names it and its address."""
    # DATABASE_URL answers, so only a connection to the direct URL can fail.
    env = {"DATABASE_URL": database_url, "MLC_DIRECT_DATABASE_URL": nowhere}
    done = _run(["-m", "mlc_graph.cli", *_args(command, tmp_path)], env)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cannot reach the database at 127.0.0.1:{_port(nowhere)}/mlc (")
    assert "or set MLC_DIRECT_DATABASE_URL to a running server (this command connects there" in lines[0]
    assert "s3cret" not in lines[0]


def test_the_line_names_the_url_each_command_connects_to() -> None:
    """Unit level: the direct URL for the session commands, DATABASE_URL (the pooler) for the rest."""
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:pw@pgbouncer:6432/mlc",
            "MLC_DIRECT_DATABASE_URL": "postgresql://app:pw@db-primary:5432/mlc",
        }
    )
    assert {command[0] for command in DIRECT_COMMANDS} == cli.DIRECT_COMMANDS
    refused = ConnectionRefusedError("Connect call failed")
    assert cli.database_down(settings, "migrate", refused).startswith(
        "cannot reach the database at db-primary:5432/mlc (Connect call failed): start PostgreSQL, or set "
        "MLC_DIRECT_DATABASE_URL to a running server (this command connects there instead of DATABASE_URL)"
    )
    pooled = cli.database_down(settings, "loadtest", refused)
    assert pooled.startswith("cannot reach the database at pgbouncer:6432/mlc (Connect call failed)")
    assert "set DATABASE_URL to a running server" in pooled
    # Without a direct URL the session commands fall back to DATABASE_URL, and say so.
    alone = Settings.from_env({"DATABASE_URL": "postgresql://app:pw@db:5432/mlc"})
    assert "db:5432/mlc" in cli.database_down(alone, "maintain", refused)
    assert "set DATABASE_URL to a running server" in cli.database_down(alone, "maintain", refused)


def test_a_bad_tier_override_is_one_line() -> None:
    done = _run(["-m", "mlc_graph.cli", "tiers"], {"MLC_TIER_OVERRIDES": '{"PRELUDE": {"students": -3}}'})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "configuration error: MLC_TIER_OVERRIDES: PRELUDE.students must be a non-negative integer"
    ]
    not_json = _run(["-m", "mlc_graph.cli", "migrate"], {"MLC_TIER_OVERRIDES": "{"})
    assert not_json.returncode == 2
    assert len(not_json.stderr.splitlines()) == 1
    assert not_json.stderr.startswith("configuration error: MLC_TIER_OVERRIDES is not JSON")


def test_persist_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    done = _run(["-m", "mlc_graph.cli", "persist", str(tmp_path / "missing.graphql")], {})
    assert done.returncode == 2
    assert done.stderr.startswith(f"cannot read {tmp_path / 'missing.graphql'}: ")
    assert len(done.stderr.splitlines()) == 1


async def test_no_progress_bar_when_output_is_not_a_terminal(
    clean_db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    org = await factories.make_org(clean_db, tier="ENSEMBLE")
    teacher = await factories.make_teacher(clean_db, org)
    roster = tmp_path / "roster.csv"
    roster.write_text("first_name,last_name,username\n" + "".join(f"Kid,{i},kid{i}\n" for i in range(30)))
    done = await asyncio.to_thread(
        _run,
        ["-m", "mlc_graph.cli", "import-students", str(roster), "--teacher", str(teacher)],
        {"DATABASE_URL": database_url},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "created 30, skipped 0 existing username(s)"
    assert done.stderr == ""


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database of its own: the dev server seeds the demo data into whatever it is given."""
    async with database.own_database("mlc_test_busy", migrated=False) as url:
        yield url


async def test_a_busy_port_is_reported_instead_of_the_banner(own_database: str) -> None:
    """`make run` on a taken port: the bind error, and no tokens printed for a server that never ran."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.to_thread(
            _run,
            ["-m", "mlc_graph.tools.devserver"],
            {"DATABASE_URL": own_database, "PORT": str(port), "MLC_REQUEST_LOG": "0"},
            180,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "teacher token" not in output
    assert "GraphiQL:" not in output
