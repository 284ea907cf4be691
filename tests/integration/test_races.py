"""Races between API calls, workers and maintenance on real Celery worker processes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobStatus
from app.services.outbox import relay_unpublished
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


@contextmanager
def acting_as_beat(step: Callable[[], object], every: float) -> Iterator[None]:
    """Run ``step`` every ``every`` seconds in a thread while the block runs, as beat would."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            step()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def _unfinished(settings: Settings, queue: dict) -> dict[str, int]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Job.status, func.count())
            .where(Job.queue_id == uuid.UUID(queue["id"]), Job.status != JobStatus.SUCCEEDED)
            .group_by(Job.status)
        ).all()
    return {status.value: count for status, count in rows}


def test_pause_resume_toggling_strands_no_job(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "toggled")
    worker = start_worker("-c", "2")
    submitted = threading.Event()
    toggles = 0

    def toggle() -> None:
        nonlocal toggles
        own_client = app.test_client()
        while not submitted.is_set():
            for action in ("pause", "resume"):
                own_client.post(f"/api/v1/queues/{queue['id']}/{action}", headers=owner.headers)
                toggles += 1

    toggler = threading.Thread(target=toggle)
    # The relay runs as often as beat runs it; the 5-minute lost-message
    # republisher never does, so a stranded job would stay pending.
    with acting_as_beat(lambda: relay_unpublished(settings.database_url), 2.0):
        toggler.start()
        for i in range(600):
            submit_job(client, owner.headers, queue, payload=i)
        submitted.set()
        toggler.join(30)
        assert toggles >= 40
        wait_for(
            lambda: _unfinished(settings, queue) == {},
            60,
            f"jobs left behind: {_unfinished(settings, queue)}\n{worker.log()[-3000:]}",
        )
