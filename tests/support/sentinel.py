"""A Redis master, its replica and three Sentinels on loopback, for failover tests.

The same ``redis-server`` binary the suite uses serves all five (``--sentinel`` turns
it into a Sentinel), so the tests need nothing installed beyond TaskForge's own
dependencies.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis

from app.redis_server import HOST, RedisProcess, find_redis_server, free_port, redis_command
from tests.support.workers import wait_for

MASTER_NAME = "tfmaster"
SENTINELS = 3


def _start(argv: list[str], port: int, data_dir: Path) -> RedisProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "redis.log", "ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=True
        )
    server = RedisProcess(process, port, data_dir)
    server.wait_ready()
    return server


def write_config(
    folder: Path,
    *,
    bind: str,
    port: int,
    master: tuple[str, int],
    down_after_ms: int,
    failover_timeout_ms: int,
) -> Path:
    """Write a Sentinel's configuration (a file of its own: Sentinel rewrites it)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind {bind}\nprotected-mode no\ndaemonize no\ndir {folder}\n"
        f"sentinel monitor {MASTER_NAME} {master[0]} {master[1]} 2\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
        f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
    )
    return config


def watching(sentinels: Sequence[tuple[str, int]]) -> bool:
    """Tell whether every Sentinel sees the master's replica and all the other Sentinels."""
    try:
        for host, port in sentinels:
            with redis.Redis(host=host, port=port, socket_timeout=2) as client:
                replicas = client.sentinel_slaves(MASTER_NAME)
                if not replicas or len(client.sentinel_sentinels(MASTER_NAME)) < len(sentinels) - 1:
                    return False
        return True
    except redis.RedisError:
        return False


def sentinel_url(sentinels: Sequence[tuple[str, int]]) -> str:
    """``REDIS_URL`` naming the Sentinels, in the form TaskForge reads."""
    return ";".join(f"sentinel://{host}:{port}/0" for host, port in sentinels)


class SentinelCluster:
    """A master and a replica watched by three Sentinels that agree with a quorum of 2."""

    def __init__(self, root: Path) -> None:
        binary = find_redis_server()
        master_port = free_port()
        self.servers = [
            _start(
                redis_command(binary, master_port, root / "master", appendonly=False),
                master_port,
                root / "master",
            )
        ]
        replica_port = free_port()
        replica_argv = redis_command(binary, replica_port, root / "replica", appendonly=False)
        replica_argv += ["--replicaof", HOST, str(master_port)]
        self.servers.append(_start(replica_argv, replica_port, root / "replica"))
        self.sentinels: list[RedisProcess] = []
        for index in range(SENTINELS):
            port = free_port()
            folder = root / f"sentinel-{index}"
            config = write_config(
                folder,
                bind=HOST,
                port=port,
                master=(HOST, master_port),
                down_after_ms=1000,
                failover_timeout_ms=4000,
            )
            self.sentinels.append(_start([binary, str(config), "--sentinel"], port, folder))
        addresses = [(HOST, s.port) for s in self.sentinels]
        wait_for(
            lambda: watching(addresses), 30, "the Sentinels never saw the replica and each other"
        )

    @property
    def url(self) -> str:
        """``REDIS_URL`` naming the three Sentinels, in the form TaskForge reads."""
        return sentinel_url([(HOST, s.port) for s in self.sentinels])

    def _ask(self, sentinel: RedisProcess, *command: str) -> object:
        with redis.Redis(host=HOST, port=sentinel.port, decode_responses=True) as client:
            return client.execute_command(*command)

    def master_port(self) -> int:
        """The port of the master every Sentinel names now."""
        answers = {
            tuple(self._ask(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME))  # type: ignore[arg-type]
            for s in self.sentinels
        }
        assert len(answers) == 1, f"the Sentinels disagree: {answers}"
        return int(answers.pop()[1])

    def fail_over(self) -> int:
        """Promote the replica, wait until every Sentinel names it and it accepts writes."""
        old = self.master_port()
        self._ask(self.sentinels[0], "SENTINEL", "FAILOVER", MASTER_NAME)

        def promoted() -> bool:
            try:
                port = self.master_port()
            except AssertionError:
                return False
            if port == old:
                return False
            with redis.Redis(host=HOST, port=port) as client:
                return bool(client.info("replication")["role"] == "master")

        wait_for(promoted, 30, "the Sentinels did not promote the replica")
        return self.master_port()

    def stop(self) -> None:
        """Stop the Sentinels, then the servers."""
        for process in [*self.sentinels, *self.servers]:
            process.stop()
