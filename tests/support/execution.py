"""The executor, the claim and the offline sweep as tests call them in-process."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from app.db import session_scope
from app.models import Job
from app.services import execution
from app.services.execution import Claimed, Outcome
from app.services.workers import mark_silent_workers_offline as mark_offline
from tasks import executor

# TASKFORGE_LEASE_SECONDS' default.
LEASE_SECONDS = 30


def execute(job_id: str, attempt: int, worker: str, database_url: str, **options: Any) -> Outcome:
    """Run one attempt of a job here, as ``taskforge.run_job`` does on a worker."""
    options.setdefault("lease_seconds", LEASE_SECONDS)
    return executor.execute(job_id, attempt, worker, database_url, **options).outcome


def mark_silent_workers_offline(database_url: str, *, heartbeat_seconds: float) -> int:
    """Run the offline sweep with a heartbeat interval of ``heartbeat_seconds``."""
    with session_scope(database_url) as session:
        return mark_offline(session, interval=timedelta(seconds=heartbeat_seconds))


def claim(database_url: str, job_id: uuid.UUID, attempt: int, worker: str) -> Claimed | None:
    """Claim attempt ``attempt + 1`` of a job for ``worker``, as the executor would."""
    return execution.claim(database_url, job_id, attempt, worker, lease_seconds=LEASE_SECONDS)


def stored_job(database_url: str, job_id: str) -> Job:
    """The job's row as stored now, detached from its session."""
    with session_scope(database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        session.expunge(job)
        return job


def run_job_task(job_id: str, attempt: int) -> str:
    """Run ``taskforge.run_job`` here as a worker would; return its result or raise."""
    executor.run_job.push_request(
        id=f"{job_id}:{attempt}", args=[job_id, attempt], retries=0, called_directly=False
    )
    try:
        return executor.run_job.run(job_id, attempt)
    finally:
        executor.run_job.pop_request()
