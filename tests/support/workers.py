"""Real ``celery worker`` subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from app.config import PROJECT_ROOT, Settings


class ServiceProcess:
    """A TaskForge process on the test's services; its output goes to a log file."""

    ready_marker = ""
    ready_timeout = 30.0
    stop_timeout = 20.0

    def __init__(
        self, settings: Settings, log_path: Path, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "TASKFORGE_REDIS_SENTINEL_MASTER": settings.redis_sentinel_master,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._stopping = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the process logs ``ready_marker``."""
        wait_for(
            lambda: self.ready_marker in self.log(),
            timeout or self.ready_timeout,
            f"{type(self).__name__} not ready:\n{self.log()[-3000:]}",
        )

    def begin_stop(self) -> None:
        """Send SIGTERM (a warm shutdown) once, without waiting."""
        if self.process.poll() is None and not self._stopping:
            self.process.send_signal(signal.SIGTERM)
            self._stopping = True

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (a warm shutdown), then kill if it does not stop in time."""
        timeout = timeout or self.stop_timeout
        self.begin_stop()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()


class WorkerProcess(ServiceProcess):
    """A Celery worker started with the test's settings."""

    ready_marker = " ready."

    def __init__(self, settings: Settings, log_path: Path, *extra: str) -> None:
        argv = [
            "celery",
            "-A",
            "tasks.celery_app",
            "worker",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
        super().__init__(settings, log_path, argv)


def stop_all(processes: Sequence[ServiceProcess]) -> None:
    """Stop processes side by side: SIGTERM to each, then wait for each (kill if late)."""
    for process in processes:
        process.begin_stop()
    for process in processes:
        process.stop()


def wait_for(
    condition: Callable[[], object], timeout: float, message: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(message)
