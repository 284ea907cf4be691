"""Run one attempt of a job: claim it in SQL, call its handler, record the outcome.

Every transition is a compare-and-set on ``(id, status, attempt_count)``:
the message names the attempt it was published for, so a duplicate, late or
revoked-but-delivered message changes no row and is acknowledged and dropped.
A cancelled job or a job of a paused queue therefore never starts, whatever
Celery's revokes and broadcasts did.

While a handler runs, a lease on the job row (``TASKFORGE_LEASE_SECONDS``,
30 by default) is renewed three times per lease.  A worker that dies (SIGKILL, OOM, power) stops
renewing; ``tasks.maintenance.sweep_expired_leases`` then records the attempt as
lost and queues the job again, or fails it once its attempts are spent.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from app.config import load_settings
from app.db import get_engine, rowcount, session_scope
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, Queue, utcnow
from app.services.dispatch import Dispatch, stage
from app.services.queues import DEFAULT_SETTINGS
from tasks.celery_app import app
from tasks.handlers import JobContext, get_handler, load_handler_modules

logger = logging.getLogger(__name__)

_settings = load_settings()
load_handler_modules(_settings.handler_modules)

# A dead worker's job is taken over within about one lease; renewing three times
# per lease rides out a slow database write or two.
LEASE_SECONDS = _settings.lease_seconds
LEASE_RENEW_SECONDS = LEASE_SECONDS / 3
CLAIMABLE = (JobStatus.PENDING, JobStatus.SCHEDULED)


@dataclass(frozen=True)
class Claimed:
    """What the worker needs to run a claimed attempt."""

    job_type: str
    payload: Any
    attempt: int
    max_attempts: int
    priority: int
    queue_id: uuid.UUID
    queue_settings: dict[str, Any]


def claim(database_url: str, job_id: uuid.UUID, attempt: int, worker: str) -> Claimed | None:
    """Move the job to ``processing`` for attempt ``attempt + 1``, or return None."""
    now = utcnow()
    queue_active = exists().where(Queue.id == Job.queue_id, Queue.is_active.is_(True))
    with session_scope(database_url) as session:
        changed = rowcount(
            session,
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt_count == attempt,
                Job.status.in_(CLAIMABLE),
                or_(Job.available_at.is_(None), Job.available_at <= now),
                queue_active,
            )
            .values(
                status=JobStatus.PROCESSING,
                attempt_count=attempt + 1,
                started_at=now,
                worker_name=worker,
                lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
                updated_at=now,
            ),
        )
        if not changed:
            _reschedule_unclaimable(session, job_id, attempt, now)
            return None
        session.add(
            JobAttempt(job_id=job_id, number=attempt + 1, worker_name=worker, started_at=now)
        )
        row = session.execute(
            select(
                Job.job_type,
                Job.payload,
                Job.max_attempts,
                Job.priority,
                Job.queue_id,
                Queue.settings,
            )
            .join(Queue, Queue.id == Job.queue_id)
            .where(Job.id == job_id)
        ).one()
    return Claimed(
        job_type=row.job_type,
        payload=row.payload,
        attempt=attempt + 1,
        max_attempts=row.max_attempts,
        priority=row.priority,
        queue_id=row.queue_id,
        queue_settings={**DEFAULT_SETTINGS, **(row.settings or {})},
    )


def _reschedule_unclaimable(
    session: Session, job_id: uuid.UUID, attempt: int, now: datetime
) -> None:
    """Give a still-waiting job a new message when this one came too early or while paused.

    A job of a paused queue is marked unpublished; resume publishes it.  A
    message that arrived before the job's time is sent again with its ETA.
    Cancelled, finished, running or superseded jobs need nothing: the message
    is simply dropped.
    """
    row = session.execute(
        select(Job, Queue.is_active, Queue.settings)
        .join(Queue, Queue.id == Job.queue_id)
        .where(Job.id == job_id, Job.attempt_count == attempt, Job.status.in_(CLAIMABLE))
    ).one_or_none()
    if row is None:
        return
    job, active, settings = row
    if not active:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt_count == attempt)
            .values(published_at=None, updated_at=Job.updated_at)
            .execution_options(synchronize_session=False)
        )
    elif job.available_at is not None and job.available_at > now:
        stage(session, Dispatch.for_job(job, {**DEFAULT_SETTINGS, **(settings or {})}))


@contextmanager
def lease_renewal(database_url: str, job_id: uuid.UUID, attempt: int) -> Iterator[None]:
    """Keep the job's lease alive from a background thread while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_RENEW_SECONDS):
            try:
                with get_engine(database_url).begin() as connection:
                    connection.execute(
                        _processing(job_id, attempt).values(
                            lease_expires_at=utcnow() + timedelta(seconds=LEASE_SECONDS),
                            updated_at=Job.updated_at,
                        )
                    )
            except Exception:
                logger.warning("could not renew the lease of job %s", job_id, exc_info=True)

    thread = threading.Thread(target=renew, name=f"lease-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def backoff_seconds(attempt: int, settings: dict[str, Any]) -> float:
    """Exponential backoff with full jitter for the retry after ``attempt``."""
    base = float(settings["retry_backoff_seconds"])
    ceiling = float(settings["retry_backoff_max_seconds"])
    return random.uniform(0, min(ceiling, base * 2 ** (attempt - 1)))


def finish_attempt(
    session: Session,
    job_id: uuid.UUID,
    number: int,
    status: AttemptStatus,
    now: datetime,
    error: str | None = None,
    trace: str | None = None,
) -> None:
    """Close a running attempt record (one already closed, e.g. as lost, stays as it is)."""
    session.execute(
        update(JobAttempt)
        .where(
            JobAttempt.job_id == job_id,
            JobAttempt.number == number,
            JobAttempt.status == AttemptStatus.RUNNING,
        )
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
        changed = rowcount(
            session,
            _processing(job_id, claimed.attempt).values(
                status=JobStatus.SUCCEEDED,
                result=result,
                error=None,
                completed_at=now,
                lease_expires_at=None,
                updated_at=now,
            ),
        )
        if changed:
            finish_attempt(session, job_id, claimed.attempt, AttemptStatus.SUCCEEDED, now)
    return bool(changed)


def end_attempt(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    max_attempts: int,
    settings: dict[str, Any],
    error: str,
    now: datetime,
) -> JobStatus | None:
    """Move a processing job on after a failed or lost attempt: retry later, or fail."""
    retry = attempt < max_attempts
    if retry:
        available_at = now + timedelta(seconds=backoff_seconds(attempt, settings))
        values: dict[str, Any] = {
            "status": JobStatus.PENDING,
            "available_at": available_at,
            "published_at": None,
        }
    else:
        values = {"status": JobStatus.FAILED, "completed_at": now}
    changed = rowcount(
        session,
        _processing(job_id, attempt).values(
            error=error, lease_expires_at=None, updated_at=now, **values
        ),
    )
    if not changed:
        return None
    if retry:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
        stage(session, Dispatch.for_job(job, settings))
    return JobStatus.PENDING if retry else JobStatus.FAILED


def record_failure(
    database_url: str, job_id: uuid.UUID, claimed: Claimed, error: str, trace: str | None
) -> JobStatus | None:
    """Record a failed attempt; retry with backoff while attempts remain, else fail."""
    now = utcnow()
    with session_scope(database_url) as session:
        outcome = end_attempt(
            session,
            job_id=job_id,
            attempt=claimed.attempt,
            max_attempts=claimed.max_attempts,
            settings=claimed.queue_settings,
            error=error,
            now=now,
        )
        if outcome is not None:
            finish_attempt(
                session, job_id, claimed.attempt, AttemptStatus.FAILED, now, error, trace
            )
    return outcome


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
        with lease_renewal(database_url, jid, claimed.attempt):
            result = get_handler(claimed.job_type)(claimed.payload, context)
        _check_json(result)
    except SoftTimeLimitExceeded:
        timeout = claimed.queue_settings["timeout_seconds"]
        outcome = record_failure(
            database_url, jid, claimed, f"Timed out after {timeout} seconds", None
        )
        return "retrying" if outcome is JobStatus.PENDING else "failed"
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
