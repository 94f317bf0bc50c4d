"""Throwaway PgBouncers (Debian's package) in transaction pooling mode, in front of a test PostgreSQL.

Each one gets a temporary directory owned by the postgres user (PgBouncer refuses to run as root), a
spare 127.0.0.1 port and a small server pool, so several client connections share each server
connection: exactly the condition that breaks session state and named prepared statements. The read
timeout is set the way docs/OPERATIONS.md tells operators to: `connect_query` on the database line,
with the client's `statement_timeout` startup parameter ignored.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.pgcluster import spare_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

_INI = """
[databases]
* = host=127.0.0.1 port={target} user=postgres connect_query='SET statement_timeout = {timeout_ms}'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,statement_timeout
server_login_retry = 1
query_wait_timeout = 5
server_reset_query_always = 0
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


def require_pgbouncer() -> None:
    """Skip (with the reason) when Debian's pgbouncer is missing; in CI that is a failure instead."""
    if os.path.exists(PGBOUNCER):
        return
    reason = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class PgBouncer:
    """One pgbouncer process in front of PostgreSQL at `target_port`."""

    def __init__(self, target_port: int, pool_size: int = 2, read_timeout_ms: int = 5000) -> None:
        self.port = spare_port()
        self.target_port = target_port
        self.pool_size = pool_size
        self.read_timeout_ms = read_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="mlc-pgbouncer-"))
        postgres = pwd.getpwnam("postgres")
        os.chown(self.dir, postgres.pw_uid, postgres.pw_gid)
        self.ini = self.dir / "pgbouncer.ini"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The runuser process whose child is pgbouncer (the benchmark sums the tree's CPU)."""
        return self._proc.pid if self._proc is not None else None

    def url_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self.ini.write_text(
            _INI.format(
                target=self.target_port,
                port=self.port,
                pool_size=self.pool_size,
                timeout_ms=self.read_timeout_ms,
                dir=self.dir,
            )
        )
        self._proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", PGBOUNCER, str(self.ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def pgbouncer(target_port: int, pool_size: int = 2, read_timeout_ms: int = 5000) -> Iterator[PgBouncer]:
    """A started PgBouncer, stopped and removed on exit."""
    require_pgbouncer()
    bouncer = PgBouncer(target_port, pool_size, read_timeout_ms)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.remove()
