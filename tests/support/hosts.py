"""Simulated hosts on one machine: Linux network namespaces on a private bridge.

Each ``Host`` is a network namespace with its own address on ``10.<n>.0.0/24``,
joined to a bridge in the root namespace (which gets ``.254`` so the test itself can
reach the hosts). Servers started on a host bind only to that host's address.
``cut()`` takes a host off the network (its link goes down: packets vanish, no
reset is sent) and ``rejoin()`` puts it back; ``kill()`` ends every process the
host started. Everything is removed when the ``Network`` closes, also after a
failure. Needs root and iproute2, which CI has.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis
from sqlalchemy import create_engine, text

from app.redis_server import find_redis_server, redis_command


def available() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    return None


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


class Host:
    """One network namespace with one address; the processes started on it."""

    def __init__(self, network: Network, name: str, address: str) -> None:
        self.network = network
        self.name = name
        self.address = address
        self.namespace = f"{network.prefix}-{name}"
        self.link = f"{network.prefix}{len(network.hosts)}"  # root side of the veth pair
        self.processes: list[subprocess.Popen[bytes]] = []

    def _create(self) -> None:
        _ip("netns", "add", self.namespace)
        _ip(
            "link",
            "add",
            self.link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.namespace,
        )
        _ip("link", "set", self.link, "master", self.network.bridge, "up")
        self.exec_ip("link", "set", "lo", "up")
        self.exec_ip("addr", "add", f"{self.address}/24", "dev", "eth0")
        self.exec_ip("link", "set", "eth0", "up")

    def exec_ip(self, *argv: str) -> None:
        """Run ``ip`` inside this host."""
        _ip("netns", "exec", self.namespace, "ip", *argv)

    def start(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` on this host (as ``user`` when given); output goes to ``log_path``."""
        prefix = ["ip", "netns", "exec", self.namespace]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*prefix, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: kill() reaches its children
            )
        self.processes.append(process)
        return process

    def start_postgres(self, log_path: Path) -> str:
        """Start a throwaway PostgreSQL on this host; return the URL of database taskforge.

        Its files live outside pytest's tmp_path (only root may enter that) and are
        removed when the network closes.
        """
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not binaries:
            raise RuntimeError("PostgreSQL is not installed (CI installs it)")
        pg_bin = binaries[-1].parent
        root = Path(tempfile.mkdtemp(prefix="taskforge-hosts-pg-"))
        self.network.cleanup.append(root)
        root.chmod(0o755)
        subprocess.run(["chown", "postgres:", str(root)], check=True)
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(pg_bin / "initdb"), "-D", str(root / "data"),
             "-U", "postgres", "--auth-host=trust", "--no-locale", "--encoding=UTF8"],
            check=True, capture_output=True, cwd=root, timeout=120,
        )  # fmt: skip
        with (root / "data" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.network.cidr} trust\n")
        self.start(
            [str(pg_bin / "postgres"), "-D", str(root / "data"), "-p", "5432",
             "-c", f"listen_addresses={self.address}", "-k", str(root),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "max_connections=300"],
            log_path, cwd=root, user="postgres",
        )  # fmt: skip
        admin = create_engine(f"postgresql+psycopg://postgres@{self.address}:5432/postgres")
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                        c.execute(text("CREATE DATABASE taskforge"))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            admin.dispose()
        return f"postgresql+psycopg://postgres@{self.address}:5432/taskforge"

    def start_redis(
        self,
        folder: Path,
        *,
        port: int = 6379,
        replica_of: Host | None = None,
        appendonly: bool = True,
    ) -> str:
        """Start redis-server on this host (a replica of ``replica_of``'s); return its URL."""
        folder.mkdir(parents=True, exist_ok=True)
        argv = redis_command(find_redis_server(), port, folder, appendonly=appendonly)
        argv[argv.index("--bind") + 1] = self.address
        argv[argv.index("--protected-mode") + 1] = "no"  # reached from other hosts
        if replica_of is not None:
            argv += ["--replicaof", replica_of.address, str(port)]
        self.start(argv, folder / "redis.log", cwd=folder)
        url = f"redis://{self.address}:{port}/0"
        deadline = time.monotonic() + 30
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as client:
                    client.ping()
                return url
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def cut(self) -> None:
        """Take the host off the network: its packets are dropped, nobody is told."""
        _ip("link", "set", self.link, "down")

    def rejoin(self) -> None:
        """Put the host back on the network."""
        _ip("link", "set", self.link, "up")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to every process group this host started and reap them."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    continue
        if sig == signal.SIGKILL:
            for process in self.processes:
                process.wait(30)

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        """SIGTERM one process group started here; SIGKILL it after ``timeout``."""
        os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait(30)


class Network:
    """A bridge and the hosts on it; a context manager that removes them all."""

    def __init__(self, subnet: int = 77) -> None:
        self.prefix = f"tf{uuid.uuid4().hex[:5]}"
        self.bridge = f"{self.prefix}br"
        self.subnet = subnet
        self.hosts: dict[str, Host] = {}
        self.gateway = f"10.{subnet}.0.254"
        self.cidr = f"10.{subnet}.0.0/24"
        self.cleanup: list[Path] = []  # folders removed when the network closes

    def __enter__(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        """A new host on the bridge, with the next free address."""
        host = Host(self, name, f"10.{self.subnet}.0.{len(self.hosts) + 1}")
        self.hosts[name] = host
        host._create()
        return host

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for host in self.hosts.values():
            host.kill()
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
