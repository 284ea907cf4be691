"""The job engine on real Celery worker processes: timing, order, pause, cancel, crashes."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from app.models import AttemptStatus, JobAttempt, utcnow
from app.services.leases import sweep_expired_leases
from app.services.outbox import republish_held_messages
from tests.conftest import Account
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]


def _queue(client: FlaskClient, owner: Account, name: str, **settings: Any) -> dict:
    return create_queue(client, owner.headers, name, **settings)


def _submit(client: FlaskClient, owner: Account, queue: dict, **body: Any) -> dict:
    return submit_job(client, owner.headers, queue, **body)


def _get(client: FlaskClient, owner: Account, job: dict) -> dict:
    return client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json


def _wait_status(
    client: FlaskClient,
    owner: Account,
    job: dict,
    status: str,
    worker: WorkerProcess,
    timeout: float = 30,
) -> dict:
    wait_for(
        lambda: _get(client, owner, job)["status"] == status,
        timeout,
        f"job never became {status}: {_get(client, owner, job)}\n{worker.log()[-3000:]}",
    )
    return _get(client, owner, job)


def _attempts(settings: Settings, job: dict) -> list[JobAttempt]:
    return job_attempts(settings, job["id"])


def test_retries_count_and_back_off(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = _queue(client, owner, "retry", retry_backoff_seconds=1, retry_backoff_max_seconds=2)
    worker = start_worker("-P", "solo")
    job = _submit(client, owner, queue, job_type="flaky", payload={"failures": 2}, max_attempts=3)
    done = _wait_status(client, owner, job, "succeeded", worker)
    assert done["attempt_count"] == 3
    attempts = _attempts(settings, job)
    assert [a.status for a in attempts] == [
        AttemptStatus.FAILED,
        AttemptStatus.FAILED,
        AttemptStatus.SUCCEEDED,
    ]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    # Full jitter: each wait is within [0, min(max, base * 2**(n-1))] plus dispatch time.
    assert gaps[0] <= 1 + 1.5 and gaps[1] <= 2 + 1.5


def test_a_scheduled_job_never_starts_early(
    client: FlaskClient, owner: Account, start_worker: Start
) -> None:
    queue = _queue(client, owner, "later")
    worker = start_worker("-P", "solo")
    due = utcnow() + timedelta(seconds=3)
    job = _submit(client, owner, queue, scheduled_for=due.isoformat())
    assert job["status"] == "scheduled"
    done = _wait_status(client, owner, job, "succeeded", worker)
    started = datetime.fromisoformat(done["started_at"])
    assert started >= due
    assert (started - due).total_seconds() < 1.5


def test_priority_order_on_a_single_process_worker(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = _queue(client, owner, "prio")
    priorities = [3, 9, 0, 5, 7, 1, 8, 2, 6, 4]
    jobs = {p: _submit(client, owner, queue, priority=p, payload=p) for p in priorities}
    worker = start_worker("-P", "solo")
    for job in jobs.values():
        _wait_status(client, owner, job, "succeeded", worker)
    order = sorted(priorities, key=lambda p: _get(client, owner, jobs[p])["started_at"])
    assert order == sorted(priorities, reverse=True)


def test_pause_holds_jobs_even_for_a_worker_started_mid_pause(
    client: FlaskClient, owner: Account, start_worker: Start
) -> None:
    paused = _queue(client, owner, "paused")
    sentinel_queue = _queue(client, owner, "sentinel")
    client.post(f"/api/v1/queues/{paused['id']}/pause", headers=owner.headers)
    held = [_submit(client, owner, paused, payload=i) for i in range(3)]
    worker = start_worker("-P", "solo")
    # Once a later job on another queue has run, the worker has had its chance at the paused ones.
    sentinel = _submit(client, owner, sentinel_queue)
    _wait_status(client, owner, sentinel, "succeeded", worker)
    assert {_get(client, owner, job)["status"] for job in held} == {"pending"}
    assert (
        client.post(f"/api/v1/queues/{paused['id']}/resume", headers=owner.headers).status_code
        == 204
    )
    for job in held:
        _wait_status(client, owner, job, "succeeded", worker)


def test_a_cancelled_job_never_starts(
    client: FlaskClient, owner: Account, start_worker: Start
) -> None:
    queue = _queue(client, owner, "cancel")
    worker = start_worker("-P", "solo")
    job = _submit(client, owner, queue, scheduled_for=(utcnow() + timedelta(seconds=2)).isoformat())
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers).status_code == 204
    sentinel = _submit(
        client, owner, queue, scheduled_for=(utcnow() + timedelta(seconds=3)).isoformat()
    )
    _wait_status(client, owner, sentinel, "succeeded", worker)
    cancelled = _get(client, owner, job)
    assert (cancelled["status"], cancelled["attempt_count"], cancelled["started_at"]) == (
        "cancelled",
        0,
        None,
    )


def test_an_over_long_attempt_times_out(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = _queue(client, owner, "slow", timeout_seconds=1)
    worker = start_worker("-c", "1")
    job = _submit(client, owner, queue, job_type="sleep", payload={"seconds": 10}, max_attempts=1)
    failed = _wait_status(client, owner, job, "failed", worker)
    assert failed["error"] == "Timed out after 1 seconds"
    assert failed["attempt_count"] == 1
    assert [a.status for a in _attempts(settings, job)] == [AttemptStatus.FAILED]


def _sweep_until(
    settings: Settings, condition: Callable[[], bool], timeout: float, message: str
) -> None:
    """Act as beat: run the lease sweeper until ``condition`` holds."""
    wait_for(
        lambda: sweep_expired_leases(settings.database_url) >= 0 and condition(),
        timeout,
        message,
        interval=0.5,
    )


@pytest.fixture
def short_leases(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Workers with 3-second leases, so a dead worker's job is taken over quickly."""
    monkeypatch.setenv("TASKFORGE_LEASE_SECONDS", "3")
    return settings.replace(lease_seconds=3)


def test_sigkill_mid_job_loses_nothing(
    client: FlaskClient, owner: Account, short_leases: Settings, start_worker: Start
) -> None:
    queue = _queue(client, owner, "fragile", retry_backoff_seconds=0)
    doomed = start_worker("-c", "1", "-n", "doomed@%h")
    job = _submit(client, owner, queue, job_type="sleep", payload={"seconds": 3})
    _wait_status(client, owner, job, "processing", doomed)
    pool = _children(doomed.process.pid)
    doomed.process.kill()
    for child in pool:
        os.kill(child, signal.SIGKILL)
    doomed.process.wait(10)
    survivor = start_worker("-P", "solo", "-n", "survivor@%h")
    _sweep_until(
        short_leases,
        lambda: _get(client, owner, job)["status"] == "succeeded",
        60,
        f"job never recovered: {_get(client, owner, job)}\n{survivor.log()[-3000:]}",
    )
    attempts = _attempts(short_leases, job)
    assert [a.status for a in attempts] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert attempts[0].worker_name.startswith("doomed@") and attempts[1].worker_name.startswith(
        "survivor@"
    )


def test_a_job_that_kills_its_worker_stops_at_max_attempts(
    client: FlaskClient,
    owner: Account,
    short_leases: Settings,
    start_worker: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_HANDLER_MODULES", "tests.support.handlers")
    queue = _queue(client, owner, "poison", retry_backoff_seconds=0)
    worker = start_worker("-c", "1")
    job = _submit(client, owner, queue, job_type="test.crash", max_attempts=2)
    _sweep_until(
        short_leases,
        lambda: _get(client, owner, job)["status"] == "failed",
        90,
        f"poison job never failed: {_get(client, owner, job)}\n{worker.log()[-3000:]}",
    )
    failed = _get(client, owner, job)
    assert failed["attempt_count"] == 2
    assert [a.status for a in _attempts(short_leases, job)] == [
        AttemptStatus.LOST,
        AttemptStatus.LOST,
    ]


def test_scheduled_jobs_held_by_a_killed_worker_run_a_lease_after_they_are_due(
    client: FlaskClient, owner: Account, short_leases: Settings, start_worker: Start
) -> None:
    queue = _queue(client, owner, "held")
    holder = start_worker("-c", "1", "-n", "holder@%h")
    due = utcnow() + timedelta(seconds=8)
    jobs = [_submit(client, owner, queue, scheduled_for=due.isoformat()) for _ in range(10)]
    # Celery keeps ETA messages in the worker, unacknowledged, until they are due.
    wait_for(
        lambda: holder.log().count("] received") >= len(jobs),
        20,
        f"the worker never fetched the messages:\n{holder.log()[-3000:]}",
    )
    pool = _children(holder.process.pid)
    holder.process.kill()
    for child in pool:
        os.kill(child, signal.SIGKILL)
    holder.process.wait(10)
    survivor = start_worker("-P", "solo", "-n", "survivor@%h")
    lease = timedelta(seconds=short_leases.lease_seconds)
    statuses = lambda: {_get(client, owner, job)["status"] for job in jobs}  # noqa: E731
    wait_for(
        lambda: (
            republish_held_messages(short_leases.database_url, after=lease) >= 0
            and statuses() == {"succeeded"}
        ),
        60,
        f"held jobs never ran: {statuses()}\n{survivor.log()[-3000:]}",
        interval=0.5,
    )
    for job in jobs:
        started = datetime.fromisoformat(_get(client, owner, job)["started_at"])
        # One lease, one beat interval of the test, then the survivor's turn.
        assert started - due < lease + timedelta(seconds=10)


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        with open(path) as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []
