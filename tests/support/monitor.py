"""The monitor process and live-view helpers for tests with real workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from app.config import Settings
from app.redis_server import free_port
from tests.conftest import Account
from tests.support.workers import ServiceProcess, WorkerProcess, wait_for

Start = Callable[..., WorkerProcess]


class MonitorProcess(ServiceProcess):
    """``python -m app.monitor`` started with the test's settings."""

    ready_marker = "receiving events"
    ready_timeout = 20.0
    stop_timeout = 15.0

    def __init__(self, settings: Settings, log_path: Path) -> None:
        env = {
            "TASKFORGE_MONITOR_INSPECT_SECONDS": "1",
            "TASKFORGE_MONITOR_BIND": f"127.0.0.1:{free_port()}",
        }
        super().__init__(settings, log_path, ["app.monitor"], env=env)


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
