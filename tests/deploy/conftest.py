"""Fixtures of the deployment tests: process roles started as ``taskforge ROLE``.

- ``start_role``: starts ``python -m app.cli ROLE`` (what the ``taskforge`` script
  runs) on the test's services, with its own ``TASKFORGE_VAR_DIR`` and free ports;
  every role still running stops at teardown.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings
from tests.support.workers import ServiceProcess, stop_all


class RoleProcess(ServiceProcess):
    """One process role, started the way an orchestrator starts it."""

    def __init__(self, settings: Settings, log_path: Path, role: str, env: dict[str, str]) -> None:
        self.role = role
        super().__init__(settings, log_path, ["app.cli", role], env=env)

    def health(self, *options: str) -> subprocess.CompletedProcess[str]:
        """Run ``taskforge health ROLE`` with the role's own environment."""
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "health", self.role, *options],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def healthy(self, *options: str) -> bool:
        """Tell whether the health check passes; fail at once if the role died."""
        assert self.process.poll() is None, f"{self.role} exited:\n{self.log()[-3000:]}"
        return self.health(*options).returncode == 0

    def terminate(self, timeout: float) -> int:
        """SIGTERM the role and return its exit code; fail if it outlives ``timeout``."""
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.role} still ran {timeout:g}s after SIGTERM:\n{self.log()[-3000:]}"
            ) from None


@pytest.fixture
def start_role(
    settings: Settings, tmp_path: Path, output_dir: Path
) -> Iterator[Callable[..., RoleProcess]]:
    """Start ``taskforge ROLE`` processes on the test's services; all stop at teardown."""
    started: list[RoleProcess] = []

    def start(role: str, **env: str) -> RoleProcess:
        environment = {
            "TASKFORGE_VAR_DIR": str(tmp_path / f"var-{role}-{len(started)}"),
            "TASKFORGE_METRICS_TOKEN": settings.metrics_token,
            **env,
        }
        process = RoleProcess(
            settings, output_dir / f"{role}-{len(started)}.log", role, environment
        )
        started.append(process)
        return process

    yield start
    stop_all(started)
