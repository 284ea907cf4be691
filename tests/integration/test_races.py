"""Races between API calls, workers and maintenance on real Celery worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from app.models import AttemptStatus
from tests.conftest import Account
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]


def _statuses(client: FlaskClient, owner: Account, jobs: list[dict]) -> list[str]:
    return [
        client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json["status"]
        for job in jobs
    ]


def test_concurrent_retries_run_a_failed_job_exactly_once_more(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "retried", retry_backoff_seconds=0)
    worker = start_worker("-c", "2")
    jobs = [
        submit_job(client, owner.headers, queue, job_type="flaky", max_attempts=1, payload=None)
        for _ in range(20)
    ]
    wait_for(
        lambda: set(_statuses(client, owner, jobs)) == {"failed"},
        60,
        f"jobs never failed: {_statuses(client, owner, jobs)}\n{worker.log()[-3000:]}",
    )
    callers = 4

    def retry_concurrently(job: dict) -> list[int]:
        barrier = threading.Barrier(callers, timeout=20)

        def retry(_: int) -> int:
            own_client = app.test_client()
            barrier.wait()
            return own_client.post(
                f"/api/v1/jobs/{job['id']}/retry", headers=owner.headers
            ).status_code

        with ThreadPoolExecutor(callers) as pool:
            return sorted(pool.map(retry, range(callers)))

    answers = [retry_concurrently(job) for job in jobs]
    assert answers == [[204] + [409] * (callers - 1)] * len(jobs)
    wait_for(
        lambda: set(_statuses(client, owner, jobs)) == {"succeeded"},
        60,
        f"jobs never succeeded: {_statuses(client, owner, jobs)}\n{worker.log()[-3000:]}",
    )
    for job in jobs:
        attempts = [(a.number, a.status) for a in job_attempts(settings, job["id"])]
        assert attempts == [(1, AttemptStatus.FAILED), (2, AttemptStatus.SUCCEEDED)]
        body: Any = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
        assert (body["attempt_count"], body["result"]) == (2, {"succeeded_on_attempt": 2})
