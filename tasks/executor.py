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
import os
import random
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Table, bindparam, exists, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.config import load_settings
from app.db import get_engine, is_unavailable, rowcount, session_scope
from app.models import (
    AttemptStatus,
    Job,
    JobAttempt,
    JobStatus,
    Queue,
    celery_queue_name,
    utcnow,
)
from app.services.dispatch import Dispatch, HandOff, stage
from app.services.queues import with_defaults
from app.services.workers import live_runners
from tasks.celery_app import app
from tasks.handlers import JobContext, get_handler, has_handler, load_handler_modules

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


# The hot path (claim, success) runs pre-built Core statements with bound
# parameters on a plain connection: building ORM statements per job cost more
# than the SQL itself (measured with cProfile: ~1.5 ms of ~6 ms per job).
_jobs = cast(Table, Job.__table__)
_attempts = cast(Table, JobAttempt.__table__)
_queues = cast(Table, Queue.__table__)

_CLAIM = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("p_id"),
        _jobs.c.attempt_count == bindparam("p_attempt"),
        _jobs.c.status.in_(CLAIMABLE),
        or_(_jobs.c.available_at.is_(None), _jobs.c.available_at <= bindparam("p_now")),
        exists().where(_queues.c.id == _jobs.c.queue_id, _queues.c.is_active.is_(True)),
    )
    .values(
        status=JobStatus.PROCESSING,
        attempt_count=bindparam("p_next"),
        started_at=bindparam("p_now"),
        worker_name=bindparam("p_worker"),
        lease_expires_at=bindparam("p_lease"),
        updated_at=bindparam("p_now"),
    )
    .returning(
        _jobs.c.job_type, _jobs.c.payload, _jobs.c.max_attempts, _jobs.c.priority, _jobs.c.queue_id
    )
)
_INSERT_ATTEMPT = insert(_attempts)
_QUEUE_SETTINGS = select(_queues.c.settings).where(_queues.c.id == bindparam("p_queue"))
_SUCCEED = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("p_id"),
        _jobs.c.status == JobStatus.PROCESSING,
        _jobs.c.attempt_count == bindparam("p_attempt"),
    )
    .values(
        status=JobStatus.SUCCEEDED,
        result=bindparam("p_result"),
        error=None,
        completed_at=bindparam("p_now"),
        lease_expires_at=None,
        updated_at=bindparam("p_now"),
    )
)
_ATTEMPT_SUCCEEDED = (
    update(_attempts)
    .where(
        _attempts.c.job_id == bindparam("p_id"),
        _attempts.c.number == bindparam("p_attempt"),
        _attempts.c.status == AttemptStatus.RUNNING,
    )
    .values(status=AttemptStatus.SUCCEEDED, finished_at=bindparam("p_now"))
)


def claim(database_url: str, job_id: uuid.UUID, attempt: int, worker: str) -> Claimed | None:
    """Move the job to ``processing`` for attempt ``attempt + 1``, or return None."""
    now = utcnow()
    with get_engine(database_url).begin() as connection:
        row = connection.execute(
            _CLAIM,
            {
                "p_id": job_id,
                "p_attempt": attempt,
                "p_next": attempt + 1,
                "p_now": now,
                "p_worker": worker,
                "p_lease": now + timedelta(seconds=LEASE_SECONDS),
            },
        ).one_or_none()
        if row is not None:
            connection.execute(
                _INSERT_ATTEMPT,
                {
                    "id": uuid.uuid4(),
                    "job_id": job_id,
                    "number": attempt + 1,
                    "status": AttemptStatus.RUNNING,
                    "worker_name": worker,
                    "started_at": now,
                },
            )
            settings = connection.execute(_QUEUE_SETTINGS, {"p_queue": row.queue_id}).scalar_one()
    if row is None:
        with session_scope(database_url) as session:
            _reschedule_unclaimable(session, job_id, attempt, now)
        return None
    return Claimed(
        job_type=row.job_type,
        payload=row.payload,
        attempt=attempt + 1,
        max_attempts=row.max_attempts,
        priority=row.priority,
        queue_id=row.queue_id,
        queue_settings=with_defaults(settings),
    )


def _reschedule_unclaimable(
    session: Session, job_id: uuid.UUID, attempt: int, now: datetime
) -> None:
    """Give a still-waiting job a new message when this one came too early or while paused.

    A job of a paused queue is marked unpublished; resume publishes it.  A
    message that arrived before the job's time is sent again with its ETA, and
    one refused while the queue was paused but resumed since is sent again.
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
        # A new generation: the stamp of a publish still in flight cannot mark
        # the job published again after this reset (resume and the relay would
        # skip it, and it would wait for the lost-message republisher).
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt_count == attempt)
            .values(
                published_at=None,
                held_since=None,
                dispatch_generation=Job.dispatch_generation + 1,
                updated_at=Job.updated_at,
            )
            .execution_options(synchronize_session=False)
        )
    else:
        # Too early, or the queue was resumed between the claim and this read:
        # the resume published only unpublished jobs, so this one needs a new
        # message (a duplicate is dropped by the claim).
        stage(session, Dispatch.for_job(job, with_defaults(settings)))


class LeaseKeeper:
    """Renew the leases of every job this process is running, from one daemon thread.

    Started lazily on first use, so each forked pool process gets its own.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._running: set[tuple[uuid.UUID, int]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def hold(self, job_id: uuid.UUID, attempt: int) -> Iterator[None]:
        """Keep the lease of ``job_id``'s attempt alive while the block runs."""
        self._ensure_thread()
        with self._lock:
            self._running.add((job_id, attempt))
        try:
            yield
        finally:
            with self._lock:
                self._running.discard((job_id, attempt))

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(LEASE_RENEW_SECONDS)
            with self._lock:
                running = list(self._running)
            if running:
                self.renew(running)

    def renew(self, running: list[tuple[uuid.UUID, int]]) -> None:
        """Push the leases of ``running`` attempts one lease into the future."""
        expires = utcnow() + timedelta(seconds=LEASE_SECONDS)
        try:
            with get_engine(self.database_url).begin() as connection:
                for job_id, attempt in running:
                    connection.execute(
                        _processing(job_id, attempt).values(
                            lease_expires_at=expires, updated_at=Job.updated_at
                        )
                    )
        except Exception:
            logger.warning("could not renew %d lease(s)", len(running), exc_info=True)


_keepers: dict[str, LeaseKeeper] = {}


def lease_keeper(database_url: str) -> LeaseKeeper:
    """The process's lease keeper for ``database_url``."""
    keeper = _keepers.get(database_url)
    if keeper is None:
        keeper = _keepers[database_url] = LeaseKeeper(database_url)
    return keeper


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
        _running_attempt(job_id, number).values(
            status=status, finished_at=now, error=error, traceback=trace
        ),
        execution_options={"synchronize_session": False},
    )


def _running_attempt(job_id: uuid.UUID, number: int) -> Any:
    return update(JobAttempt).where(
        JobAttempt.job_id == job_id,
        JobAttempt.number == number,
        JobAttempt.status == AttemptStatus.RUNNING,
    )


def _processing(job_id: uuid.UUID, attempt: int) -> Any:
    return update(Job).where(
        Job.id == job_id, Job.status == JobStatus.PROCESSING, Job.attempt_count == attempt
    )


def record_success(database_url: str, job_id: uuid.UUID, claimed: Claimed, result: Any) -> bool:
    """Mark the attempt and the job succeeded; False when the job moved on meanwhile."""
    params = {"p_id": job_id, "p_attempt": claimed.attempt, "p_now": utcnow(), "p_result": result}
    with get_engine(database_url).begin() as connection:
        changed = connection.execute(_SUCCEED, params).rowcount
        if changed:
            connection.execute(_ATTEMPT_SUCCEEDED, params)
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
            "held_since": None,
            "dispatch_generation": Job.dispatch_generation + 1,
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


# A job handed on this many times without reaching a worker that runs it fails:
# the workers' advertised job types are wrong, and it must not bounce for ever.
MAX_HAND_OFFS = 3


def unrunnable_error(job_type: str) -> str:
    """The error of a job that no live worker of its queue has a handler for."""
    return (
        f"No live worker of this queue has a handler for job type '{job_type}' "
        "(workers load handlers from TASKFORGE_HANDLER_MODULES)"
    )


def hand_on(
    database_url: str, job_id: uuid.UUID, attempt: int, job_type: str, worker: str, hops: int
) -> str:
    """Pass a job this worker has no handler for to a live worker of its queue that has one.

    No attempt is spent: the job is not claimed.  The message goes to the other
    worker's own (worker-direct) queue, and the job is marked held from now, so
    the sweeper re-queues it if that worker dies first.  Without such a worker,
    or after ``MAX_HAND_OFFS`` hand-offs, the job fails at once, without retries.
    """
    now = utcnow()
    with session_scope(database_url) as session:
        row = session.execute(
            select(Job, Queue.is_active, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(Job.id == job_id, Job.attempt_count == attempt, Job.status.in_(CLAIMABLE))
        ).one_or_none()
        if row is None:
            return "dropped"
        job, active, settings = row
        if not active or (job.available_at is not None and job.available_at > now):
            _reschedule_unclaimable(session, job_id, attempt, now)
            return "dropped"
        targets = [
            runner.hostname
            for runner in live_runners(session, celery_queue=celery_queue_name(job.queue_id))
            if runner.hostname != worker and runner.runs(job_type)
        ]
        still_waiting = (
            Job.id == job_id,
            Job.attempt_count == attempt,
            Job.dispatch_generation == job.dispatch_generation,
            Job.status.in_(CLAIMABLE),
        )
        if targets and hops < MAX_HAND_OFFS:
            # A new generation: a publisher's late stamp must not clear held_since.
            handed = rowcount(
                session,
                update(Job)
                .where(*still_waiting)
                .values(
                    published_at=now,
                    held_since=now,
                    dispatch_generation=Job.dispatch_generation + 1,
                    updated_at=Job.updated_at,
                ),
            )
            if not handed:
                return "dropped"
            item = replace(Dispatch.for_job(job, with_defaults(settings)), eta=None)
            stage(session, HandOff(item, hostname=random.choice(targets), hops=hops + 1))
            return "handed_on"
        error = unrunnable_error(job_type)
        if targets:
            error += f"; handed on {hops} times without reaching one"
        failed = rowcount(
            session,
            update(Job)
            .where(*still_waiting)
            .values(status=JobStatus.FAILED, error=error, completed_at=now, updated_at=now),
        )
    return "failed" if failed else "dropped"


def execute(
    job_id: str,
    attempt: int,
    worker: str,
    database_url: str,
    *,
    job_type: str | None = None,
    hops: int = 0,
) -> str:
    """Run attempt ``attempt + 1`` of a job; return what happened, for logs and tests.

    ``job_type`` comes with the message: a job this worker cannot run is handed
    on (or failed) before it is claimed.  A message without it (published
    before job types travelled) is claimed first, as it used to be.
    """
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        logger.error("dropping a message with a malformed job id %r", job_id)
        return "dropped"
    if job_type is not None and not has_handler(job_type):
        routed = hand_on(database_url, jid, attempt, job_type, worker, hops)
        logger.info("job %s of a type without a handler here (%r): %s", job_id, job_type, routed)
        return routed
    claimed = claim(database_url, jid, attempt, worker)
    if claimed is None:
        logger.info("job %s attempt %s is not claimable; message dropped", job_id, attempt + 1)
        return "dropped"
    context = JobContext(job_id=job_id, attempt=claimed.attempt, max_attempts=claimed.max_attempts)
    try:
        with lease_keeper(database_url).hold(jid, claimed.attempt):
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


class JobTask(Task):
    """Base class: job state lives in SQL, so Celery keeps no result."""

    ignore_result = True
    acks_late = True
    reject_on_worker_lost = True


# While the database is unreachable a message must not be acknowledged as if it
# had been handled: the job's row still says "pending", and nothing else would
# wake it.  Celery re-sends it with a growing delay instead.
DB_RETRY_MAX_SECONDS = 30


@app.task(name="taskforge.run_job", base=JobTask, bind=True, max_retries=None)
def run_job(
    self: JobTask, job_id: str, attempt: int, job_type: str | None = None, hops: int = 0
) -> str:
    """Run one attempt of a TaskForge job."""
    try:
        return execute(
            job_id,
            attempt,
            self.request.hostname or "unknown",
            _settings.database_url,
            job_type=job_type,
            hops=hops,
        )
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        delay = min(DB_RETRY_MAX_SECONDS, 2 ** min(self.request.retries, 5))
        logger.warning("database unavailable; job %s retried in %ss", job_id, delay)
        raise self.retry(exc=exc, countdown=delay) from exc
