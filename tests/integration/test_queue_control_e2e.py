"""Queue control on real Celery workers and a real Redis: purge, explain, staged redrive."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.models import AuditEvent, Job, JobStatus, utcnow
from app.runtime import Runtime
from app.services import queue_control
from tasks.publisher import flush_stamps
from tests.conftest import Account
from tests.support.api import create_queue, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]


def _get(client: FlaskClient, owner: Account, job: dict) -> dict:
    return client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json


def _wait_status(
    client: FlaskClient, owner: Account, job: dict, status: str, worker: WorkerProcess | None
) -> dict:
    wait_for(
        lambda: _get(client, owner, job)["status"] == status,
        60,
        f"job never became {status}: {_get(client, owner, job)}\n"
        f"{worker.log()[-3000:] if worker else ''}",
    )
    return _get(client, owner, job)


def _explain(client: FlaskClient, owner: Account, job: dict) -> dict:
    flush_stamps()  # publication is stamped off the request path, within a second
    response = client.get(f"/api/v1/jobs/{job['id']}/explain", headers=owner.headers)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def _codes(client: FlaskClient, owner: Account, job: dict) -> list[str]:
    return [b["code"] for b in _explain(client, owner, job)["blockers"]]


def test_purge_leaves_running_work_alone_and_a_purged_message_never_runs(
    client: FlaskClient, owner: Account, runtime: Runtime, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "purge")
    worker = start_worker("-P", "solo")
    running = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 3})
    _wait_status(client, owner, running, "processing", worker)
    waiting = [submit_job(client, owner.headers, queue, payload=i) for i in range(4)]
    purged = client.post(
        f"/api/v1/queues/{queue['id']}/purge", json={"confirm_name": "purge"}, headers=owner.headers
    )
    assert purged.json == {"count": 4}
    celery_queue = f"tf.{queue['id']}"
    # The solo worker holds at most one of them; the rest are still on the broker.
    assert (runtime.broker.depth(celery_queue) or 0) >= 3
    assert _wait_status(client, owner, running, "succeeded", worker)["attempt_count"] == 1
    # A job submitted after the purge runs only after the purged messages ahead of it.
    sentinel = submit_job(client, owner.headers, queue)
    _wait_status(client, owner, sentinel, "succeeded", worker)
    assert runtime.broker.depth(celery_queue) == 0, "the purged messages were consumed"
    for job in waiting:
        after = _get(client, owner, job)
        assert (after["status"], after["attempt_count"], after["started_at"]) == (
            "cancelled",
            0,
            None,
        )
    again = client.post(
        f"/api/v1/queues/{queue['id']}/purge", json={"confirm_name": "purge"}, headers=owner.headers
    )
    assert again.json == {"count": 0}


def test_explain_names_each_blocker_in_turn(
    client: FlaskClient, owner: Account, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "why")
    first = submit_job(client, owner.headers, queue)
    assert _codes(client, owner, first) == ["no_live_worker"]

    worker = start_worker("-P", "solo")
    done = _wait_status(client, owner, first, "succeeded", worker)
    finished = _explain(client, owner, done)
    assert finished["state"] == "finished"
    assert finished["timings"]["attempts"] == 1 and finished["timings"]["waited_seconds"] > 0

    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    paused = submit_job(client, owner.headers, queue)
    assert _codes(client, owner, paused) == ["queue_paused"]
    client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers)
    _wait_status(client, owner, paused, "succeeded", worker)

    later = submit_job(
        client, owner.headers, queue, scheduled_for=(utcnow() + timedelta(minutes=5)).isoformat()
    )
    blockers = _explain(client, owner, later)["blockers"]
    assert [b["code"] for b in blockers] == ["scheduled", "message_unpublished"]
    assert 200 < blockers[0]["details"]["in_seconds"] <= 300

    busy = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 4})
    _wait_status(client, owner, busy, "processing", worker)
    behind = [submit_job(client, owner.headers, queue) for _ in range(3)]
    found = _explain(client, owner, behind[-1])
    assert found["state"] == "waiting"
    ahead = next(b for b in found["blockers"] if b["code"] == "jobs_ahead")
    assert ahead["details"]["running"] == 1
    assert 1 <= ahead["details"]["ahead"] <= 2, "the solo worker may hold the first one"
    running = _explain(client, owner, busy)
    assert running["state"] == "running"
    for job in behind:
        _wait_status(client, owner, job, "succeeded", worker)

    worker.stop()
    orphan = submit_job(client, owner.headers, queue)
    assert _codes(client, owner, orphan) == ["no_live_worker"]


def _dead_letters(client: FlaskClient, owner: Account, queue: dict, n: int) -> list[dict]:
    return [
        submit_job(client, owner.headers, queue, job_type="fail", payload={"message": f"bad {i}"})
        for i in range(n)
    ]


def _redriven(settings: Settings, redrive_id: str) -> list[Job]:
    with session_scope(settings.database_url) as session:
        jobs = session.scalars(
            select(Job).where(Job.redrive_id == uuid.UUID(redrive_id)).order_by(Job.created_at)
        ).all()
        session.expunge_all()
        return list(jobs)


def test_a_redrive_keeps_to_its_rate_and_a_dry_run_runs_nothing(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "dlq", max_attempts=1)
    worker = start_worker("-P", "solo")
    originals = _dead_letters(client, owner, queue, 6)
    for job in originals:
        _wait_status(client, owner, job, "failed", worker)
    url = f"/api/v1/queues/{queue['id']}/dead-letters/redrive"
    dry = client.post(url, json={"max_per_second": 4}, headers=owner.headers).json
    assert (dry["dry_run"], dry["count"]) == (True, 6)
    sentinel = submit_job(client, owner.headers, queue)
    _wait_status(client, owner, sentinel, "succeeded", worker)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).where(Job.redriven_from.is_not(None))) == 0

    real = client.post(
        url,
        json={"dry_run": False, "max_per_second": 4, "stop_after_failures": 100},
        headers=owner.headers,
    ).json
    assert (real["dry_run"], real["count"]) == (False, 6)
    slots = {j["job_id"]: datetime.fromisoformat(j["runs_at"]) for j in real["jobs"]}
    wait_for(
        lambda: all(j.status is JobStatus.FAILED for j in _redriven(settings, real["redrive_id"])),
        60,
        f"redriven jobs did not all run\n{worker.log()[-3000:]}",
    )
    redriven = _redriven(settings, real["redrive_id"])
    assert {str(j.redriven_from) for j in redriven} == {j["id"] for j in originals}
    for job in redriven:
        assert job.started_at is not None
        assert job.started_at >= slots[str(job.id)], "no redriven job starts before its slot"
    ordered = sorted(slots.values())
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ordered)] == pytest.approx(
        [0.25] * 5
    )


def test_a_redrive_stops_on_its_own_when_its_jobs_fail_again(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "dlq-stop", max_attempts=1)
    worker = start_worker("-P", "solo")
    for job in _dead_letters(client, owner, queue, 8):
        _wait_status(client, owner, job, "failed", worker)
    real = client.post(
        f"/api/v1/queues/{queue['id']}/dead-letters/redrive",
        json={"dry_run": False, "max_per_second": 1, "stop_after_failures": 2},
        headers=owner.headers,
    ).json
    assert real["count"] == 8

    halted: list[int] = []

    def watch() -> bool:
        # Act as beat's redrive watch.
        with session_scope(settings.database_url) as session:
            halted.append(queue_control.halt_failing_redrives(session))
        return sum(halted) > 0

    wait_for(watch, 60, f"the redrive never stopped\n{worker.log()[-3000:]}", interval=0.2)
    redriven = _redriven(settings, real["redrive_id"])
    statuses = [j.status for j in redriven]
    assert statuses.count(JobStatus.FAILED) >= 2
    assert statuses.count(JobStatus.CANCELLED) == sum(halted) >= 1
    cancelled = [j for j in redriven if j.status is JobStatus.CANCELLED]
    # Once every slot has passed, the worker has had the cancelled jobs' ETA messages.
    last_slot = max(datetime.fromisoformat(j["runs_at"]) for j in real["jobs"])
    wait_for(lambda: utcnow() > last_slot + timedelta(seconds=1), 30, "slots never passed")
    sentinel = submit_job(client, owner.headers, queue)
    _wait_status(client, owner, sentinel, "succeeded", worker)
    for job in cancelled:
        assert _get(client, owner, {"id": str(job.id)})["attempt_count"] == 0
    with session_scope(settings.database_url) as session:
        actions: list[Any] = list(
            session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at))
        )
    assert actions[-2:] == ["dead_letters.redrive", "dead_letters.redrive_halted"]
