"""Job types across workers with different handler modules, on real Celery workers."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.models import AttemptStatus, Worker
from app.services.routing import unrunnable_error
from tests.conftest import Account
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]
HOST = socket.gethostname()


def _get(client: FlaskClient, owner: Account, job: dict) -> Any:
    return client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json


def _advertised(settings: Settings, hostname: str, queue: dict) -> bool:
    """Tell whether the worker registered with its job types, consuming ``queue``."""
    with session_scope(settings.database_url) as session:
        worker = session.scalar(select(Worker).where(Worker.hostname == hostname))
        return bool(worker and worker.job_types and f"tf.{queue['id']}" in (worker.queues or []))


def test_a_worker_without_the_handler_hands_jobs_on_without_spending_attempts(
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    start_worker: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = create_queue(client, owner.headers, "mail", retry_backoff_seconds=0)
    plain = start_worker("-P", "solo", "-n", "plain@%h")
    # The README's recipe: a second worker with the application's handlers.
    monkeypatch.setenv("TASKFORGE_HANDLER_MODULES", "tests.support.handlers")
    able = start_worker("-P", "solo", "-n", "able@%h")
    for name in ("plain", "able"):
        wait_for(lambda name=name: _advertised(settings, f"{name}@{HOST}", queue), 20, name)
    # Keep the able worker busy, so the plain one takes every job submitted next.
    busy = submit_job(client, owner.headers, queue, job_type="test.hold", payload={"seconds": 4})
    wait_for(lambda: _get(client, owner, busy)["status"] == "processing", 20, able.log())
    jobs = [
        submit_job(client, owner.headers, queue, job_type="test.greet", payload=i, max_attempts=1)
        for i in range(6)
    ]
    logs = lambda: f"{plain.log()[-2000:]}\n{able.log()[-2000:]}"  # noqa: E731
    for job in jobs:
        wait_for(lambda job=job: _get(client, owner, job)["status"] == "succeeded", 30, logs())
    for i, job in enumerate(jobs):
        assert (_get(client, owner, job)["attempt_count"], _get(client, owner, job)["result"]) == (
            1,
            {"hello": i},
        )
        attempts = [(a.number, a.status, a.worker_name) for a in job_attempts(settings, job["id"])]
        assert attempts == [(1, AttemptStatus.SUCCEEDED, f"able@{HOST}")]
    # While the able worker was busy the plain one took the jobs and handed them on.
    assert "'handed_on'" in plain.log()


def test_a_job_no_live_worker_can_run_fails_at_once_and_is_refused_once_known(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "nobody-sends-mail", retry_backoff_seconds=0)
    # No worker has said what it runs yet: the submit cannot be refused.
    job = submit_job(client, owner.headers, queue, job_type="test.greet", max_attempts=3)
    plain = start_worker("-P", "solo", "-n", "plain@%h")
    wait_for(lambda: _get(client, owner, job)["status"] == "failed", 20, plain.log())
    failed = _get(client, owner, job)
    assert (failed["attempt_count"], failed["error"]) == (0, unrunnable_error("test.greet"))
    assert job_attempts(settings, job["id"]) == []
    wait_for(lambda: _advertised(settings, f"plain@{HOST}", queue), 20, plain.log())
    refused = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "test.greet"},
        headers=owner.headers,
    )
    assert refused.status_code == 400, refused.json
    assert "test.greet" in refused.json["errors"]["job_type"][0]
