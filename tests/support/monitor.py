"""The monitor process and live-view helpers for tests with real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from app.config import PROJECT_ROOT, Settings
from tests.conftest import Account
from tests.support.workers import WorkerProcess, wait_for

Start = Callable[..., WorkerProcess]


class MonitorProcess:
    """``python -m app.monitor`` started with the test's settings; its log goes to a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "TASKFORGE_MONITOR_INSPECT_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.monitor"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        """Everything the monitor printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until the monitor says it receives events."""
        wait_for(
            lambda: "receiving events" in self.log(),
            timeout,
            f"monitor not ready:\n{self.log()[-3000:]}",
        )

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then kill if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()


def api(client: FlaskClient, account: Account, path: str, **query: Any) -> Any:
    """GET an API path as ``account``; assert 200 and return the body."""
    response = client.get(f"/api/v1{path}", query_string=query, headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json


def create_queue(client: FlaskClient, account: Account, name: str, **settings: Any) -> Any:
    """Create a queue and return it."""
    response = client.post(
        "/api/v1/queues", json={"name": name, "settings": settings}, headers=account.headers
    )
    assert response.status_code == 201, response.json
    return response.json


def submit(client: FlaskClient, account: Account, queue: Any, job_type: str, **body: Any) -> Any:
    """Submit a job and return it."""
    response = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": job_type, **body},
        headers=account.headers,
    )
    assert response.status_code == 201, response.json
    return response.json


def job_status(client: FlaskClient, account: Account, job: Any) -> str:
    """The job's current status."""
    return str(api(client, account, f"/jobs/{job['id']}")["status"])


def ran_on(client: FlaskClient, account: Account, job: Any) -> str | None:
    """The worker that ran the job's first attempt."""
    attempts = api(client, account, f"/jobs/{job['id']}/stats")["attempts"]
    return attempts[0]["worker"] if attempts else None


def registered(client: FlaskClient, account: Account, prefix: str) -> Any:
    """The account's worker whose hostname starts with ``prefix``, or None."""
    for worker in api(client, account, "/workers", limit=100)["workers"]:
        if (worker["hostname"] or "").startswith(prefix):
            return worker
    return None


def wait_registered(
    client: FlaskClient, account: Account, prefix: str, worker: WorkerProcess
) -> Any:
    """Wait until the worker with nodename ``prefix@…`` has registered itself."""
    wait_for(
        lambda: registered(client, account, prefix),
        30,
        f"worker {prefix} never registered:\n{worker.log()[-3000:]}",
    )
    return registered(client, account, prefix)
