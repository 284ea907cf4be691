"""Run one attempt of a job: claim it in SQL, call its handler, record the outcome.

Every transition is a compare-and-set on ``(id, status, attempt_count)``:
the message names the attempt it was published for, so a duplicate, late or
revoked-but-delivered message changes no row and is acknowledged and dropped.
A cancelled job or a job of a paused queue therefore never starts, whatever
Celery's revokes and broadcasts did.
"""

from __future__ import annotations

import json
import logging
import random
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import exists, select, update

from app.config import load_settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, Queue, utcnow
from app.services.dispatch import Dispatch, stage
from app.services.queues import DEFAULT_SETTINGS
from tasks.celery_app import app
from tasks.handlers import JobContext, get_handler, load_handler_modules

logger = logging.getLogger(__name__)

_settings = load_settings()
load_handler_modules(_settings.handler_modules)


@dataclass(frozen=True)
class Claimed:
    """What the worker needs to run a claimed attempt."""

    job_type: str
    payload: Any
    attempt: int
    max_attempts: int
    queue_settings: dict[str, Any]


def claim(database_url: str, job_id: uuid.UUID, attempt: int, worker: str) -> Claimed | None:
    """Move the job to ``processing`` for attempt ``attempt + 1``, or return None."""
    now = utcnow()
    queue_active = exists().where(Queue.id == Job.queue_id, Queue.is_active.is_(True))
    with session_scope(database_url) as session:
        changed = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt_count == attempt,
                Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                queue_active,
            )
            .values(
                status=JobStatus.PROCESSING,
                attempt_count=attempt + 1,
                started_at=now,
                worker_name=worker,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            _release_if_paused(session, job_id, attempt)
            return None
        session.add(
            JobAttempt(job_id=job_id, number=attempt + 1, worker_name=worker, started_at=now)
        )
        row = session.execute(
            select(Job.job_type, Job.payload, Job.max_attempts, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(Job.id == job_id)
        ).one()
    return Claimed(
        job_type=row.job_type,
        payload=row.payload,
        attempt=attempt + 1,
        max_attempts=row.max_attempts,
        queue_settings={**DEFAULT_SETTINGS, **(row.settings or {})},
    )


def _release_if_paused(session: Any, job_id: uuid.UUID, attempt: int) -> None:
    """Forget the publish of a job whose queue is paused, so resume re-publishes it."""
    paused = exists().where(Queue.id == Job.queue_id, Queue.is_active.is_(False))
    session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.attempt_count == attempt,
            Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
            paused,
        )
        .values(published_at=None, updated_at=Job.updated_at)
        .execution_options(synchronize_session=False)
    )


def backoff_seconds(attempt: int, settings: dict[str, Any]) -> float:
    """Exponential backoff with full jitter for the retry after ``attempt``."""
    base = float(settings["retry_backoff_seconds"])
    ceiling = float(settings["retry_backoff_max_seconds"])
    return random.uniform(0, min(ceiling, base * 2 ** (attempt - 1)))


def _finish_attempt(
    session: Any,
    job_id: uuid.UUID,
    number: int,
    status: AttemptStatus,
    now: datetime,
    error: str | None = None,
    trace: str | None = None,
) -> None:
    session.execute(
        update(JobAttempt)
        .where(JobAttempt.job_id == job_id, JobAttempt.number == number)
        .values(status=status, finished_at=now, error=error, traceback=trace)
        .execution_options(synchronize_session=False)
    )


def _processing(job_id: uuid.UUID, attempt: int) -> Any:
    return update(Job).where(
        Job.id == job_id, Job.status == JobStatus.PROCESSING, Job.attempt_count == attempt
    )


def record_success(database_url: str, job_id: uuid.UUID, claimed: Claimed, result: Any) -> bool:
    """Mark the attempt and the job succeeded; False when the job moved on meanwhile."""
    now = utcnow()
    with session_scope(database_url) as session:
        _finish_attempt(session, job_id, claimed.attempt, AttemptStatus.SUCCEEDED, now)
        changed = session.execute(
            _processing(job_id, claimed.attempt)
            .values(
                status=JobStatus.SUCCEEDED,
                result=result,
                error=None,
                completed_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    return bool(changed)


def record_failure(
    database_url: str, job_id: uuid.UUID, claimed: Claimed, error: str, trace: str | None
) -> JobStatus | None:
    """Record a failed attempt; retry with backoff while attempts remain, else fail."""
    now = utcnow()
    retry = claimed.attempt < claimed.max_attempts
    with session_scope(database_url) as session:
        _finish_attempt(session, job_id, claimed.attempt, AttemptStatus.FAILED, now, error, trace)
        if retry:
            values: dict[str, Any] = {
                "status": JobStatus.PENDING,
                "error": error,
                "published_at": None,
                "updated_at": now,
            }
        else:
            values = {
                "status": JobStatus.FAILED,
                "error": error,
                "completed_at": now,
                "updated_at": now,
            }
        changed = session.execute(
            _processing(job_id, claimed.attempt)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            return None
        if retry:
            job = session.get(Job, job_id)
            assert job is not None
            delay = backoff_seconds(claimed.attempt, claimed.queue_settings)
            stage(session, Dispatch.for_job(job, eta=now + timedelta(seconds=delay)))
    return JobStatus.PENDING if retry else JobStatus.FAILED


def execute(job_id: str, attempt: int, worker: str, database_url: str) -> str:
    """Run attempt ``attempt + 1`` of a job; return what happened, for logs and tests."""
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        logger.error("dropping a message with a malformed job id %r", job_id)
        return "dropped"
    claimed = claim(database_url, jid, attempt, worker)
    if claimed is None:
        logger.info("job %s attempt %s is not claimable; message dropped", job_id, attempt + 1)
        return "dropped"
    context = JobContext(job_id=job_id, attempt=claimed.attempt, max_attempts=claimed.max_attempts)
    try:
        result = get_handler(claimed.job_type)(claimed.payload, context)
        _check_json(result)
    except SoftTimeLimitExceeded:
        timeout = claimed.queue_settings["timeout_seconds"]
        record_failure(database_url, jid, claimed, f"Timed out after {timeout} seconds", None)
        return "failed"
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        outcome = record_failure(database_url, jid, claimed, message, traceback.format_exc())
        return "retrying" if outcome is JobStatus.PENDING else "failed"
    record_success(database_url, jid, claimed, result)
    return "succeeded"


def _check_json(value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"The handler returned a result that is not JSON: {exc}") from None


class JobTask(Task):  # type: ignore[misc]
    """Base class: job state lives in SQL, so Celery keeps no result."""

    ignore_result = True
    acks_late = True
    reject_on_worker_lost = True


@app.task(name="taskforge.run_job", base=JobTask, bind=True)
def run_job(self: JobTask, job_id: str, attempt: int) -> str:
    """Run one attempt of a TaskForge job."""
    return execute(job_id, attempt, self.request.hostname or "unknown", _settings.database_url)
