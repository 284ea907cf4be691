"""Concurrent state changes of one job through the service layer, each caller on its own session."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from app.db import session_scope
from app.errors import Conflict
from app.models import Job, JobStatus
from app.services import jobs as job_service
from app.services.auth import actor_for_user_id
from tests.conftest import Account
from tests.support.api import create_queue, submit_job
from tests.support.execution import execute, stored_job

CALLERS = 4


def _race(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, owner: Account, call: Callable[..., Any]
) -> list[str]:
    """Run ``call`` from CALLERS threads that all read the job before any of them writes."""
    barrier = threading.Barrier(CALLERS, timeout=20)
    real_get_job = job_service.get_job

    def get_job_then_wait(*args: Any, **kwargs: Any) -> Job:
        job = real_get_job(*args, **kwargs)
        barrier.wait()
        return job

    monkeypatch.setattr(job_service, "get_job", get_job_then_wait)
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller() -> None:
        try:
            with session_scope(settings.database_url) as session:
                call(session, actor=actor_for_user_id(session, owner.user_id))
            outcome = "ok"
        except Conflict:
            outcome = "conflict"
        except Exception as exc:
            outcome = f"error: {exc!r}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(outcomes)


def test_exactly_one_of_concurrent_retries_wins(
    client: FlaskClient, owner: Account, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = create_queue(client, owner.headers, "races", retry_backoff_seconds=0)
    for _ in range(3):
        job = submit_job(client, owner.headers, queue, job_type="fail", max_attempts=1)
        assert execute(job["id"], 0, "w", settings.database_url) == "failed"
        outcomes = _race(
            monkeypatch,
            settings,
            owner,
            lambda session, actor, job_id=job["id"]: job_service.retry_job(
                session, actor=actor, job_id=job_id
            ),
        )
        assert outcomes == ["conflict"] * (CALLERS - 1) + ["ok"]
        retried = stored_job(settings.database_url, job["id"])
        assert (retried.status, retried.attempt_count, retried.max_attempts) == (
            JobStatus.PENDING,
            1,
            2,
        )


def test_a_retry_never_resets_a_job_another_retry_already_restarted(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = create_queue(client, owner.headers, "late-retry", retry_backoff_seconds=0)
    job = submit_job(client, owner.headers, queue, job_type="flaky", max_attempts=1)
    assert execute(job["id"], 0, "w", settings.database_url) == "failed"
    with session_scope(settings.database_url) as stale:
        actor = actor_for_user_id(stale, owner.user_id)
        loaded = job_service.get_job(stale, actor=actor, job_id=job["id"])
        assert loaded.status is JobStatus.FAILED
        # Meanwhile another caller retries the job and a worker runs it to success.
        assert (
            client.post(f"/api/v1/jobs/{job['id']}/retry", headers=owner.headers).status_code == 204
        )
        assert execute(job["id"], 1, "w", settings.database_url) == "succeeded"
        with pytest.raises(Conflict):
            job_service.retry_job(stale, actor=actor, job_id=job["id"])
    done = stored_job(settings.database_url, job["id"])
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, {"succeeded_on_attempt": 2})
