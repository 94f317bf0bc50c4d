"""Throwaway PostgreSQL clusters for tests that must stop a server or stream to a replica.

Each cluster lives in its own temporary directory owned by the postgres user, listens on a spare
127.0.0.1 port and is stopped (immediately) and removed when the test ends. We run as root, and the
server refuses to, so every binary runs through `runuser -u postgres`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("MLC_PG_BIN", "/usr/lib/postgresql/15/bin"))

_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 4
hot_standby = on
hot_standby_feedback = on
fsync = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 40
"""
_HBA = """
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, args)],
        check=check,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Cluster:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        _as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "30", "stop", check=False)


@contextmanager
def _workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mlc-pg-"))
    postgres = pwd.getpwnam("postgres")
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _configure(data: Path, port: int, sockets: Path) -> None:
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(_CONF.format(port=port, sockets=sockets))


@contextmanager
def primary_cluster() -> Iterator[Cluster]:
    """A fresh cluster, started; stopped and deleted afterwards whatever happens."""
    with _workdir() as root:
        data = root / "primary"
        _as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        port = spare_port()
        _configure(data, port, root)
        (data / "pg_hba.conf").write_text(_HBA)
        cluster = Cluster(data, port, root / "primary.log")
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop("immediate")


@contextmanager
def streaming_replica(primary: Cluster) -> Iterator[Cluster]:
    """A hot standby made with pg_basebackup -R from `primary`, streaming from it."""
    root = primary.data.parent
    data = root / f"replica-{spare_port()}"
    _as_postgres(
        PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync",
    )  # fmt: skip
    port = spare_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nport = {port}\n")
    replica = Cluster(data, port, root / f"{data.name}.log")
    try:
        replica.start()
        yield replica
    finally:
        replica.stop("immediate")
