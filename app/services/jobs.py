"""Jobs: submit, read, list, cancel, retry and per-job statistics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.celery_names import task_id
from app.db import rowcount
from app.errors import Conflict, NotFound, TaskForgeError, ValidationFailed
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, Queue, utcnow
from app.services import execution
from app.services import queues as queue_service
from app.services.actors import Actor, Permission
from app.services.outbox import Dispatch, Revoke, Submitted, stage
from app.services.pagination import Page, paginate
from app.services.queue_settings import QueueSettings
from app.services.validation import (
    check_datetime,
    check_json_document,
    check_range,
    parse_uuid,
    parse_uuid_field,
)
from app.services.workers import BUILTIN_JOB_TYPES, Runner, check_runnable, live_runners

JOB_TYPE_CHARS = "A-Za-z0-9_.:-"
JOB_TYPE_MAX = 100
JOB_TYPE_PATTERN = re.compile(f"^[{JOB_TYPE_CHARS}]{{1,{JOB_TYPE_MAX}}}$")
PAYLOAD_MAX_BYTES = 512 * 1024
IDEMPOTENCY_KEY_MAX = 255
# Visible ASCII, spaces inside only: what an HTTP header carries unchanged (it trims the ends).
IDEMPOTENCY_KEY_PATTERN = re.compile(rf"^[!-~](?:[ -~]{{0,{IDEMPOTENCY_KEY_MAX - 2}}}[!-~])?$")
BATCH_MAX = 500


def _load(session: Session, actor: Actor, job_id: str | uuid.UUID) -> Job:
    job = session.get(Job, parse_uuid(job_id, what="Job"))
    if job is None or job.organization_id != actor.organization_id:
        raise NotFound("Job not found")
    return job


def get_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Return one of the actor's jobs."""
    actor.require(Permission.JOB_READ)
    return _load(session, actor, job_id)


def list_jobs(
    session: Session,
    *,
    actor: Actor,
    page: int,
    limit: int,
    status: JobStatus | None = None,
    queue_id: str | uuid.UUID | None = None,
) -> Page[Job]:
    """List jobs newest first (``ix_jobs_org_status_created`` / ``ix_jobs_org_created``)."""
    actor.require(Permission.JOB_READ)
    query = select(Job).where(Job.organization_id == actor.organization_id)
    if status is not None:
        query = query.where(Job.status == status)
    if queue_id is not None:
        query = query.where(Job.queue_id == parse_uuid_field(queue_id, "queue_id"))
    query = query.order_by(Job.created_at.desc(), Job.id.desc())
    return paginate(session, query, page=page, limit=limit)


def _resolve_queue(
    session: Session, actor: Actor, queue_id: str | uuid.UUID | None, queue_name: str | None
) -> Queue:
    if queue_id is not None:
        queue = session.get(Queue, parse_uuid_field(queue_id, "queue_id"))
        if queue is None or queue.organization_id != actor.organization_id:
            raise NotFound("Queue not found")
        return queue
    if queue_name is not None:
        return queue_service.get_queue_by_name(session, actor=actor, name=queue_name)
    raise ValidationFailed(
        "Either queue_id or queue_name is required",
        errors={"queue_id": ["Either queue_id or queue_name is required."]},
    )


def _check_job_type(job_type: str) -> str:
    if not JOB_TYPE_PATTERN.match(job_type):
        raise ValidationFailed.field(
            "job_type", "1-100 characters of letters, digits, '_', '.', ':' or '-'."
        )
    return job_type


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise ValidationFailed.field(
            "idempotency_key",
            f"1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters (spaces only between them).",
        )
    return key


def _existing_for_key(session: Session, actor: Actor, key: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.organization_id == actor.organization_id, Job.idempotency_key == key)
    )


def submit_job(
    session: Session,
    *,
    actor: Actor,
    job_type: str,
    payload: Any = None,
    queue_id: str | uuid.UUID | None = None,
    queue_name: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    scheduled_for: datetime | None = None,
    idempotency_key: str | None = None,
    runners: dict[uuid.UUID, list[Runner]] | None = None,
) -> Job:
    """Store a job and stage its dispatch; the same idempotency key returns the same job.

    A job type that none of the queue's live workers has a handler for, when
    they all advertised theirs, is refused.  ``runners`` caches those workers
    per queue across the jobs of a batch.
    """
    actor.require(Permission.JOB_WRITE)
    idempotency_key = _check_idempotency_key(idempotency_key)
    if idempotency_key is not None:
        existing = _existing_for_key(session, actor, idempotency_key)
        if existing is not None:
            return existing
    queue = _resolve_queue(session, actor, queue_id, queue_name)
    job_type = _check_job_type(job_type)
    if job_type not in BUILTIN_JOB_TYPES:
        runners = {} if runners is None else runners
        if queue.id not in runners:
            runners[queue.id] = live_runners(session, celery_queue=queue.celery_queue)
        check_runnable(runners[queue.id], job_type)
    check_json_document(payload, "payload", max_bytes=PAYLOAD_MAX_BYTES)
    check_range(priority, "priority", 0, 9)
    if max_attempts is None:
        max_attempts = QueueSettings.from_stored(queue.settings).max_attempts
    check_range(max_attempts, "max_attempts", 1, 10)
    if scheduled_for is not None:
        scheduled_for = check_datetime(scheduled_for, "scheduled_for")
    now = utcnow()
    future = scheduled_for is not None and scheduled_for > now
    job = Job(
        id=uuid.uuid4(),
        organization_id=actor.organization_id,
        queue_id=queue.id,
        job_type=job_type,
        payload=payload,
        status=JobStatus.SCHEDULED if future else JobStatus.PENDING,
        priority=priority,
        max_attempts=max_attempts,
        attempt_count=0,
        dispatch_generation=0,
        scheduled_for=scheduled_for,
        available_at=scheduled_for if future else None,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
    )
    if idempotency_key is None:
        session.add(job)
        session.flush()
    else:
        # Two concurrent submits with one key: the unique index lets one win,
        # and the other returns the winner's job.
        try:
            with session.begin_nested():
                session.add(job)
                session.flush()
        except IntegrityError:
            winner = _existing_for_key(session, actor, idempotency_key)
            if winner is None:
                raise
            return winner
    stage(session, Submitted(queue.id))
    if queue.is_active:
        # A paused queue's jobs stay unpublished until resume publishes them.
        stage(session, Dispatch.for_job(job, QueueSettings.from_stored(queue.settings)))
    return job


def submit_jobs(session: Session, *, actor: Actor, jobs: Sequence[Mapping[str, Any]]) -> list[Job]:
    """Submit ``submit_job`` keyword sets at once; the first bad one fails all as ``jobs[i]``."""
    actor.require(Permission.JOB_WRITE)
    if not 1 <= len(jobs) <= BATCH_MAX:
        raise ValidationFailed.field("jobs", f"Send between 1 and {BATCH_MAX} jobs.")
    submitted: list[Job] = []
    # The session's identity map holds objects weakly; keeping each queue here
    # lets every later job of the batch find it there instead of SELECTing it.
    queues: dict[uuid.UUID, Queue | None] = {}
    runners: dict[uuid.UUID, list[Runner]] = {}
    for index, spec in enumerate(jobs):
        try:
            job = submit_job(session, actor=actor, runners=runners, **spec)
            submitted.append(job)
            if job.queue_id not in queues:
                queues[job.queue_id] = session.get(Queue, job.queue_id)
        except TaskForgeError as exc:
            errors = {f"jobs[{index}].{name}": msgs for name, msgs in exc.errors.items()}
            raise type(exc)(f"jobs[{index}]: {exc.message}", errors=errors) from exc
    return submitted


def cancel_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Cancel a pending, scheduled or running job; a running one is stopped."""
    job = get_job(session, actor=actor, job_id=job_id)
    actor.require(Permission.JOB_WRITE)
    # Compare-and-sets: a worker claiming or finishing the job at the same moment,
    # or a concurrent cancel, wins or loses atomically, never both.
    now = utcnow()
    cancelled = {"status": JobStatus.CANCELLED, "completed_at": now, "updated_at": now}
    waiting = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(execution.CLAIMABLE))
        .values(**cancelled)
        .returning(Job.attempt_count),
        execution_options={"synchronize_session": False},
    ).scalar_one_or_none()
    if waiting is not None:
        stage(session, Revoke(task_id(job.id, waiting)))
    else:
        running = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.PROCESSING)
            .values(lease_expires_at=None, **cancelled)
            .returning(Job.attempt_count),
            execution_options={"synchronize_session": False},
        ).scalar_one_or_none()
        if running is not None:
            execution.finish_attempt(
                session, job.id, running, AttemptStatus.CANCELLED, now, execution.CANCELLED_ERROR
            )
            # The attempt's message carried the attempt count it was published for.
            stage(session, Revoke(task_id(job.id, running - 1), terminate=True))
    session.refresh(job)
    if waiting is None and running is None:
        raise Conflict(f"A {job.status.value} job cannot be cancelled")
    return job


def retry_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Queue a failed job again with a fresh attempt budget, keeping its history."""
    job = get_job(session, actor=actor, job_id=job_id)
    actor.require(Permission.JOB_WRITE)
    # One compare-and-set: of concurrent retries exactly one moves the job out of
    # ``failed``; a retry that read the job before another one restarted it
    # changes nothing (it must not reset a running or finished attempt).
    changed = rowcount(
        session,
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.FAILED)
        .values(
            # A fresh budget: max_attempts more attempts on top of those already made.
            max_attempts=Job.attempt_count + Job.max_attempts,
            status=JobStatus.PENDING,
            completed_at=None,
            error=None,
            result=None,
            published_at=None,
            held_since=None,
            dispatch_generation=Job.dispatch_generation + 1,
            available_at=None,
            updated_at=utcnow(),
        ),
    )
    session.refresh(job)
    if not changed:
        raise Conflict(f"Only failed jobs can be retried; this one is {job.status.value}")
    queue = session.get(Queue, job.queue_id)
    assert queue is not None
    if queue.is_active:
        stage(session, Dispatch.for_job(job, QueueSettings.from_stored(queue.settings)))
    return job


@dataclass(frozen=True)
class JobStats:
    """A job's attempts with their timings."""

    job: Job
    attempts: Sequence[JobAttempt]

    @property
    def wait_seconds(self) -> float | None:
        """Time from becoming due to the first start."""
        if self.job.started_at is None and not self.attempts:
            return None
        first_start = self.attempts[0].started_at if self.attempts else self.job.started_at
        assert first_start is not None
        due = max(self.job.created_at, self.job.scheduled_for or self.job.created_at)
        return max(0.0, (first_start - due).total_seconds())

    @property
    def run_seconds(self) -> float:
        """Total time spent running, over all finished attempts."""
        return sum(
            (a.finished_at - a.started_at).total_seconds()
            for a in self.attempts
            if a.finished_at is not None
        )


def job_stats(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> JobStats:
    """Return a job's attempts in order (served by ``ix_job_attempts_job_id``)."""
    job = get_job(session, actor=actor, job_id=job_id)
    attempts = session.scalars(
        select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.number)
    ).all()
    return JobStats(job=job, attempts=attempts)
