"""Queue policies on real workers: caps and rates hold across processes, dead slots come back."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobAttempt, JobStatus
from app.runtime import Runtime
from app.services.leases import sweep_expired_leases
from app.services.outbox import republish_lost_messages
from tests.conftest import Account
from tests.support.api import create_queue, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]


def _set_policy(client: FlaskClient, owner: Account, queue: dict, policy: dict) -> None:
    response = client.put(
        f"/api/v1/queues/{queue['id']}/policy", json=policy, headers=owner.headers
    )
    assert response.status_code == 200, response.json


def _status(client: FlaskClient, owner: Account, job: dict) -> str:
    return str(client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json["status"])


def _all_succeed(
    client: FlaskClient, owner: Account, jobs: list[dict], *workers: WorkerProcess
) -> None:
    wait_for(
        lambda: all(_status(client, owner, job) == "succeeded" for job in jobs),
        90,
        "jobs never all succeeded\n" + "\n".join(w.log()[-2000:] for w in workers),
        interval=0.2,
    )


def _attempts(settings: Settings, jobs: list[dict]) -> list[JobAttempt]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(JobAttempt).where(JobAttempt.job_id.in_([uuid.UUID(j["id"]) for j in jobs]))
        ).all()
        session.expunge_all()
        return list(rows)


def _most_at_once(attempts: list[JobAttempt]) -> int:
    """The largest number of attempts whose [start, finish] intervals overlap."""
    edges: list[tuple[datetime, int]] = []
    for attempt in attempts:
        assert attempt.finished_at is not None
        edges += [(attempt.started_at, 1), (attempt.finished_at, -1)]
    running = most = 0
    # A finish at the same instant as a start ends first.
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        most = max(most, running)
    return most


def test_a_concurrency_cap_holds_across_two_worker_processes(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "capped")
    _set_policy(client, owner, queue, {"max_concurrent_jobs": 2})
    first = start_worker("-c", "2", "-n", "first@%h")
    second = start_worker("-c", "2", "-n", "second@%h")
    jobs = [
        submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 0.5})
        for _ in range(10)
    ]
    _all_succeed(client, owner, jobs, first, second)
    attempts = _attempts(settings, jobs)
    assert len(attempts) == 10
    assert _most_at_once(attempts) == 2, "four pool processes, at most two at once"
    assert {a.worker_name.split("@")[0] for a in attempts if a.worker_name} == {"first", "second"}


def _pool(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []


def test_the_cap_holds_while_a_worker_is_killed_and_replaced(
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    runtime: Runtime,
    start_worker: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_LEASE_SECONDS", "3")
    queue = create_queue(client, owner.headers, "capped-chaos", retry_backoff_seconds=0)
    _set_policy(client, owner, queue, {"max_concurrent_jobs": 2})
    doomed = start_worker("-c", "2", "-n", "doomed@%h")
    steady = start_worker("-c", "2", "-n", "steady@%h")
    jobs = [
        submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 2})
        for _ in range(10)
    ]

    def doomed_runs() -> bool:
        return any(
            a.worker_name and a.worker_name.startswith("doomed@") and a.finished_at is None
            for a in _attempts(settings, jobs)
        )

    wait_for(doomed_runs, 60, f"the doomed worker never ran a job\n{doomed.log()[-3000:]}")
    for child in _pool(doomed.process.pid):
        os.kill(child, signal.SIGKILL)
    doomed.process.kill()
    doomed.process.wait(10)
    # Nobody renews these leases any more: each slot is held until its lease runs out.
    lease_ends = _leases_of(settings, "doomed@")
    start_worker("-c", "2", "-n", "replacement@%h")
    # Act as beat: the sweeper takes over the dead attempts; the messages the dead
    # worker had reserved (or held back with an ETA) stay unacknowledged in Redis
    # until its visibility timeout, so the lost-message republisher sends them again
    # (here without its five minutes' patience; the claim drops any duplicate).
    broker = runtime.broker
    wait_for(
        lambda: (
            sweep_expired_leases(settings.database_url) >= 0
            and republish_lost_messages(
                settings.database_url, broker.depth, older_than=timedelta(0)
            )
            >= 0
            and all(_status(client, owner, job) == "succeeded" for job in jobs)
        ),
        120,
        f"jobs never all succeeded\n{steady.log()[-3000:]}",
        interval=0.5,
    )
    attempts = _attempts(settings, jobs)
    lost = [a for a in attempts if a.status is AttemptStatus.LOST]
    assert lost, "the kill caught a running attempt"
    # A lost attempt held its slot until its lease ran out; count it running until then.
    for attempt in lost:
        attempt.finished_at = lease_ends[attempt.job_id]
    assert _most_at_once(attempts) <= 2


def _leases_of(settings: Settings, worker_prefix: str) -> dict[uuid.UUID, datetime]:
    """When each job a (dead) worker was running loses its lease."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Job.id, Job.lease_expires_at).where(
                Job.status == JobStatus.PROCESSING, Job.worker_name.startswith(worker_prefix)
            )
        ).all()
    return {row.id: row.lease_expires_at for row in rows if row.lease_expires_at is not None}


def test_a_dead_workers_slot_comes_back_after_its_lease(
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    start_worker: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_LEASE_SECONDS", "3")
    queue = create_queue(client, owner.headers, "one-at-a-time")
    _set_policy(client, owner, queue, {"max_concurrent_jobs": 1})
    doomed = start_worker("-P", "solo", "-n", "doomed@%h")
    stuck = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 120})
    wait_for(lambda: _status(client, owner, stuck) == "processing", 30, doomed.log()[-3000:])
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    survivor = start_worker("-P", "solo", "-n", "survivor@%h")
    waiting = submit_job(client, owner.headers, queue)
    explained = client.get(f"/api/v1/jobs/{waiting['id']}/explain", headers=owner.headers).json
    capped = [b for b in explained["blockers"] if b["code"] == "concurrency_cap"]
    assert capped and capped[0]["details"]["running"] == 1
    # No sweeper runs here: the slot comes back because the dead attempt's lease ran out.
    wait_for(
        lambda: _status(client, owner, waiting) == "succeeded",
        60,
        f"the slot never came back\n{survivor.log()[-3000:]}",
        interval=0.2,
    )
    assert _status(client, owner, stuck) == "processing", "the dead attempt was not swept"


def test_a_rate_limit_spaces_dispatches_across_two_workers(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "metered")
    _set_policy(client, owner, queue, {"max_dispatches_per_second": 2, "burst": 1})
    first = start_worker("-c", "2", "-n", "first@%h")
    second = start_worker("-c", "2", "-n", "second@%h")
    jobs = [submit_job(client, owner.headers, queue) for _ in range(8)]
    _all_succeed(client, owner, jobs, first, second)
    starts = sorted(a.started_at for a in _attempts(settings, jobs))
    # The eighth token comes 3.5 s after the first: a loaded machine only stretches this.
    assert (starts[-1] - starts[0]).total_seconds() >= 3.0
    # Generous: one burst token plus two a second, and one more for claim jitter.
    for start in starts:
        window = [s for s in starts if start <= s < start + timedelta(seconds=1)]
        assert len(window) <= 4, [s.isoformat() for s in starts]
