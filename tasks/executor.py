"""The ``taskforge.run_job`` task: run one attempt of a job on this worker.

The state machine is the core's (``app.services.execution``): hand the job on when
this worker has no handler for its type, claim it, call the handler while the
lease keeper renews the lease, record success or failure.  What stays here is
Celery's part: the task, its soft time limit, its retry while the database is
down, the lease keeper's thread, and the Celery state each attempt ends in: a
failed attempt ends in FAILURE with the handler's exception and traceback, or in
RETRY when TaskForge will run another attempt (it publishes that attempt itself;
Celery sends nothing).  A success, a dropped or a handed-on message is SUCCESS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import Task, signals
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.utils.serialization import get_pickleable_exception
from sqlalchemy.exc import SQLAlchemyError

from app.celery_names import RUN_JOB, parse_task_id
from app.db import is_unavailable
from app.models import JobStatus
from app.services import execution, policies, routing
from app.services.execution import Outcome
from app.services.leases import renew_leases
from tasks import celery_tasks
from tasks.celery_app import app
from tasks.handlers import JobContext, JobFailed, get_handler, has_handler
from tasks.worker import runtime

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renew the leases of every job this process is running, from one daemon thread.

    Renewing three times per lease rides out a slow database write or two.  The
    thread starts lazily on first use, so each forked pool process gets its own.
    """

    def __init__(self, database_url: str, lease_seconds: float) -> None:
        self.database_url = database_url
        self.lease_seconds = lease_seconds
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
            if self._pid != os.getpid():
                # Forked: the parent's thread is gone and its lock may be held for ever.
                self._lock = threading.Lock()
                self._running = set()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            with self._lock:
                running = list(self._running)
            if running:
                self.renew(running)

    def renew(self, running: list[tuple[uuid.UUID, int]]) -> None:
        """Push the leases of ``running`` attempts one lease into the future."""
        try:
            renew_leases(self.database_url, running, lease_seconds=self.lease_seconds)
        except Exception:
            logger.warning("could not renew %d lease(s)", len(running), exc_info=True)


_keepers: dict[str, LeaseKeeper] = {}


def lease_keeper(database_url: str, lease_seconds: float) -> LeaseKeeper:
    """The process's lease keeper for ``database_url``."""
    keeper = _keepers.get(database_url)
    if keeper is None:
        keeper = _keepers[database_url] = LeaseKeeper(database_url, lease_seconds)
    return keeper


@dataclass(frozen=True)
class Ran:
    """What one message did and, for a failed attempt, the exception that failed it."""

    outcome: Outcome
    error: BaseException | None = None


def _failed(outcome: JobStatus | None, exc: BaseException) -> Ran:
    return Ran(Outcome.RETRYING if outcome is JobStatus.PENDING else Outcome.FAILED, exc)


def _record_failed(
    database_url: str, job_id: uuid.UUID, claimed: execution.Claimed, exc: Exception
) -> Ran:
    """Record the attempt that ``exc`` failed (called while it is being handled)."""
    after = celery_tasks.after_failure(claimed.job_type, exc)
    # A Celery task's ``Retry`` carries the exception that failed the attempt.
    cause = exc.exc if isinstance(exc, Retry) and exc.exc is not None else exc
    if isinstance(cause, SoftTimeLimitExceeded):
        limit = celery_tasks.time_limit(claimed.job_type, claimed.queue_settings.timeout_seconds)
        error, trace = execution.timeout_error(limit), None
    else:
        error, trace = str(cause) or type(cause).__name__, traceback.format_exc()
    return _failed(
        execution.record_failure(database_url, job_id, claimed, error, trace, after), cause
    )


def execute(
    job_id: str,
    attempt: int,
    worker: str,
    database_url: str,
    *,
    lease_seconds: float,
    job_type: str | None = None,
    hops: int = 0,
) -> Ran:
    """Run attempt ``attempt + 1`` of a job; return what happened, for the task and tests.

    ``job_type`` comes with the message: a job this worker cannot run is handed
    on (or failed) before it is claimed.  A message without it (published
    before job types travelled) is claimed first, as it used to be.
    """
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        logger.error("dropping a message with a malformed job id %r", job_id)
        return Ran(Outcome.DROPPED)
    if job_type is not None and not has_handler(job_type):
        routed = routing.hand_on(database_url, jid, attempt, job_type, worker, hops)
        logger.info("job %s of a type without a handler here (%r): %s", job_id, job_type, routed)
        if routed is Outcome.FAILED:
            return Ran(routed, JobFailed(routing.unrunnable_error(job_type)))
        return Ran(routed)
    # A queue without a policy needs no policy read: one claim does it all.
    claimed = execution.claim(
        database_url, jid, attempt, worker, lease_seconds=lease_seconds, unlimited=True
    )
    if claimed is None:
        if policies.hold_back(database_url, jid, attempt):
            return Ran(Outcome.HELD_BACK)
        claimed = execution.claim(database_url, jid, attempt, worker, lease_seconds=lease_seconds)
    if claimed is None:
        logger.info("job %s attempt %s is not claimable; message dropped", job_id, attempt + 1)
        return Ran(Outcome.DROPPED)
    context = JobContext(job_id=job_id, attempt=claimed.attempt, max_attempts=claimed.max_attempts)
    try:
        with lease_keeper(database_url, lease_seconds).hold(jid, claimed.attempt):
            result = get_handler(claimed.job_type)(claimed.payload, context)
        execution.check_result(result)
    except Exception as exc:
        return _record_failed(database_url, jid, claimed, exc)
    if not execution.record_success(database_url, jid, claimed, result):
        # Cancelled (or swept) while it ran: the result is not the job's.
        logger.info("job %s attempt %s moved on while it ran; result dropped", job_id, attempt + 1)
        return Ran(Outcome.DROPPED)
    return Ran(Outcome.SUCCEEDED)


class JobTask(Task):
    """Base class: job state lives in SQL, so Celery keeps no result."""

    # A loaded Celery task's own time limits tighten its jobs' (the queue's).
    Request = celery_tasks.JobRequest
    ignore_result = True
    acks_late = True
    reject_on_worker_lost = True


# While the database is unreachable a message must not be acknowledged as if it
# had been handled: the job's row still says "pending", and nothing else would
# wake it.  Celery re-sends it with a growing delay instead.
DB_RETRY_MAX_SECONDS = 30


@app.task(name=RUN_JOB, base=JobTask, bind=True, max_retries=None)
def run_job(
    self: JobTask, job_id: str, attempt: int, job_type: str | None = None, hops: int = 0
) -> str:
    """Run one attempt of a TaskForge job; end in FAILURE or RETRY when the attempt failed."""
    settings = runtime().settings
    try:
        ran = execute(
            job_id,
            attempt,
            self.request.hostname or "unknown",
            settings.database_url,
            lease_seconds=settings.lease_seconds,
            job_type=job_type,
            hops=hops,
        )
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        delay = min(DB_RETRY_MAX_SECONDS, 2 ** min(self.request.retries, 5))
        logger.warning("database unavailable; job %s retried in %ss", job_id, delay)
        raise self.retry(exc=exc, countdown=delay) from exc
    if ran.error is None:
        return ran.outcome.value
    if ran.outcome is Outcome.RETRYING:
        # Celery's RETRY state and task-retried event, without a Celery re-send:
        # the next attempt's message is TaskForge's (after its backoff).
        retry = Retry("TaskForge runs another attempt", exc=get_pickleable_exception(ran.error))
        raise retry from ran.error
    raise ran.error


@signals.task_revoked.connect
def _cancel_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    """End a job ``cancelled`` in SQL when any Celery client revoked its task.

    Celery sends this in the worker's main process when a revoked message
    arrives (it is then acked and dropped) and when a revoke with ``terminate``
    killed the pool process running it.
    """
    if getattr(sender, "name", None) != RUN_JOB or request is None:
        return
    parsed = parse_task_id(request.id)
    if parsed is None:
        return
    job_id, attempt = parsed
    try:
        cancelled = execution.cancel_revoked(
            runtime().settings.database_url, job_id, attempt, terminated=bool(terminated)
        )
    except SQLAlchemyError:
        # The revoke still stands on this worker; SQL is told when the message
        # comes again (the lost-message republisher sends it while it is pending).
        logger.warning("could not cancel revoked job %s", job_id, exc_info=True)
        return
    if cancelled:
        logger.info("job %s cancelled: its task %s was revoked", job_id, request.id)
