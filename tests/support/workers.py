"""Real ``celery worker`` subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.config import PROJECT_ROOT, Settings


class WorkerProcess:
    """A Celery worker started with the test's settings; its log goes to a file."""

    def __init__(self, settings: Settings, log_path: Path, *extra: str) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [
            sys.executable,
            "-m",
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
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the worker says it is ready."""
        wait_for(
            lambda: " ready." in self.log(), timeout, f"worker not ready:\n{self.log()[-3000:]}"
        )

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown, then kill if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()


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
