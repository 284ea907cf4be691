"""A real job, end to end: REST submit → Redis → a real Celery worker → SQL → REST."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests.conftest import Account
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]


def _status(client: FlaskClient, owner: Account, job_id: str) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}", headers=owner.headers).json


def test_echo_job_succeeds_on_a_real_worker(
    client: FlaskClient, owner: Account, queue: dict, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-c", "2")
    payload = {"greeting": "hello", "items": [1, 2, {"nested": True}], "none": None}
    job = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", "payload": payload},
        headers=owner.headers,
    ).json
    wait_for(
        lambda: _status(client, owner, job["id"])["status"] == "succeeded",
        30,
        f"job did not succeed:\n{worker.log()[-3000:]}",
    )
    done = _status(client, owner, job["id"])
    assert done["result"] == payload
    assert done["attempt_count"] == 1
    assert done["started_at"] and done["completed_at"]


def test_queue_created_while_the_worker_runs_is_consumed(
    client: FlaskClient, owner: Account, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-P", "solo")
    queue = client.post("/api/v1/queues", json={"name": "late"}, headers=owner.headers).json
    wait_for(lambda: f"tf.{queue['id']}" in worker.log(), 15, "worker never added the new queue")
    job = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", "payload": 1},
        headers=owner.headers,
    ).json
    wait_for(
        lambda: _status(client, owner, job["id"])["status"] == "succeeded",
        30,
        f"job did not succeed:\n{worker.log()[-3000:]}",
    )


def test_failing_job_retries_then_fails_with_its_error(
    client: FlaskClient, owner: Account, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue = client.post(
        "/api/v1/queues",
        json={"name": "retrying", "settings": {"retry_backoff_seconds": 0, "max_attempts": 3}},
        headers=owner.headers,
    ).json
    worker = start_worker("-P", "solo")
    job = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "fail", "payload": {"message": "nope"}},
        headers=owner.headers,
    ).json
    wait_for(
        lambda: _status(client, owner, job["id"])["status"] == "failed",
        30,
        f"job did not fail:\n{worker.log()[-3000:]}",
    )
    failed = _status(client, owner, job["id"])
    assert (failed["attempt_count"], failed["error"]) == (3, "nope")
