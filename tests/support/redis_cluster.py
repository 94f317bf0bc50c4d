"""A throwaway Redis Cluster: six local redis-server nodes (three primaries, three replicas) on spare ports.

Built with `redis-cli --cluster create ... --cluster-replicas 1`, each node in its own temporary
directory, with a short `cluster-node-timeout` so a killed primary is replaced within seconds. A test
may kill a primary (`kill_primary_of`) and later start it again (it rejoins as a replica).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from redis.cluster import RedisCluster as SyncCluster
from redis.crc import key_slot

from tests.support.redis_server import free_port

NODE_TIMEOUT_MS = 1000
# Each node also listens on its port + 10000 (the cluster bus), so ports must stay below 55536.
_MAX_PORT = 55535


def cluster_port() -> int:
    """A spare port whose cluster-bus port (+10000) is spare too."""
    for _ in range(1000):
        port = free_port()
        if port > _MAX_PORT:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no spare port pair for a cluster node")


def require_redis_cluster() -> None:
    """Skip (with the reason) without redis-server and redis-cli; in CI that is a failure instead."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed: the Redis Cluster tests need them"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica syncs at once, not after the default 5 s: a primary killed before its replica's
                # first sync has no replica that may take over, and the cluster never heals.
                "--repl-diskless-sync-delay", "0",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis_sync.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            for _ in range(200):
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(redis_sync.ConnectionError, redis_sync.TimeoutError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        log = self.dir / "redis.log"
        tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
        raise RuntimeError(f"redis-server on {self.port} did not start: {tail}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class RedisClusterNodes:
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """What REDIS_URL says to run on this cluster (any node is a seed)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def client(self) -> SyncCluster:
        return SyncCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)

    def node_for(self, key: str) -> Node:
        """The node serving `key`'s slot as primary right now (CLUSTER SLOTS from a live node)."""
        slot = key_slot(key.encode())
        live = next(n for n in self.nodes if n.proc is not None)
        client = redis_sync.Redis(port=live.port, socket_timeout=1.0)
        try:
            ranges: list[Any] = client.cluster("SLOTS")
        finally:
            client.close()
        for start, end, primary, *_ in ranges:
            if int(start) <= slot <= int(end):
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise LookupError(f"slot {slot} is not served")

    def wait_healthy(self, within: float = 30.0) -> None:
        """Until every live node reports cluster_state:ok, all 16384 slots are served and replicas are synced."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                if node.proc is None:
                    continue
                client = redis_sync.Redis(port=node.port, decode_responses=True, socket_timeout=1.0)
                try:
                    info = client.cluster("INFO")
                    replication = client.info("replication")
                    # A replica counts once it has synced with its primary: only then can it take over.
                    synced = (
                        replication.get("role") != "slave" or replication.get("master_link_status") == "up"
                    )
                    states.append(
                        info.get("cluster_state") == "ok"
                        and int(info.get("cluster_slots_ok", 0)) == 16384
                        and synced
                    )
                except redis_sync.RedisError:
                    states.append(False)
                finally:
                    client.close()
            if states and all(states):
                return
            time.sleep(0.1)
        raise TimeoutError("Redis Cluster did not become healthy")


@contextlib.contextmanager
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """Six nodes, clustered with one replica per primary; every node killed and removed on exit."""
    require_redis_cluster()
    root = Path(tempfile.mkdtemp(prefix="mlc-redis-cluster-"))
    cluster = RedisClusterNodes()
    try:
        for i in range(6):
            node_dir = root / f"node{i}"
            node_dir.mkdir()
            cluster.nodes.append(Node(cluster_port(), node_dir))
        for node in cluster.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster.wait_healthy()
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)
