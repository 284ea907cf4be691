"""A job attempt's life in SQL: claim, succeed, fail (retry after a delay, or fail).

Every transition is a compare-and-set on ``(id, status, attempt_count)``: the
message names the attempt it was published for, so a duplicate, late or
revoked-but-delivered message changes no row and is acknowledged and dropped.
A cancelled job or a job of a paused queue therefore never starts, whatever
Celery's revokes and broadcasts did.

While a handler runs, its worker renews a lease on the job row; an attempt whose
lease runs out is lost (``app.services.leases``).

The Celery side (the task, the handler call, the lease-keeper thread) is
``tasks.executor``; this module imports no framework.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.db import rowcount, session_scope
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, Queue, utcnow
from app.prepared import Prepared, write
from app.services.outbox import Dispatch, stage
from app.services.queue_settings import QueueSettings

logger = logging.getLogger(__name__)

CLAIMABLE = (JobStatus.PENDING, JobStatus.SCHEDULED)
CANCELLED_ERROR = "Cancelled while running"


class Outcome(enum.StrEnum):
    """What one message did; the run_job task returns it and the monitor shows it."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    # The claim refused the message (duplicate, cancelled, paused, too early).
    DROPPED = "dropped"
    # Passed, unclaimed, to a worker that has the job type's handler.
    HANDED_ON = "handed_on"
    # Not claimed: the queue's policy (rate or concurrency) holds it back for now.
    HELD_BACK = "held_back"

    @classmethod
    def from_event(cls, result: object) -> Outcome | None:
        """The outcome a ``task-succeeded`` event carries (the repr of the value returned)."""
        if not isinstance(result, str):
            return None
        try:
            return cls(result.strip("'\""))
        except ValueError:
            return None


@dataclass(frozen=True)
class AfterFailure:
    """What a failed attempt asks of its job: another attempt (after a delay), or none.

    The default is the queue's rule: retry after the queue's backoff.  A job
    type with a retry policy of its own (a Celery task's ``retry()`` or
    ``autoretry_for``, ``tasks.celery_tasks``) names its delay or ends the job;
    either way the job's ``max_attempts`` still caps the attempts.
    """

    retry: bool = True
    # None: the queue's backoff.
    delay_seconds: float | None = None


QUEUE_BACKOFF = AfterFailure()
NO_RETRY = AfterFailure(retry=False)


@dataclass(frozen=True)
class Claimed:
    """What the worker needs to run a claimed attempt."""

    job_type: str
    payload: Any
    attempt: int
    max_attempts: int
    queue_settings: QueueSettings


# The hot path (claim, success) runs pre-built Core statements with bound
# parameters on a plain connection: building ORM statements per job cost more
# than the SQL itself (measured with cProfile: ~1.5 ms of ~6 ms per job).
_jobs = cast(Table, Job.__table__)
_attempts = cast(Table, JobAttempt.__table__)
_queues = cast(Table, Queue.__table__)


def _claim_statement(*, unlimited: bool) -> Any:
    """The claim's compare-and-set; ``unlimited`` also requires a queue without a policy.

    It returns the queue's settings with the job (a scalar subquery), so a claim is
    one UPDATE and one INSERT in one transaction.
    """
    queue_ready = [_queues.c.id == _jobs.c.queue_id, _queues.c.is_active.is_(True)]
    if unlimited:
        # A policy removed through the API is stored as JSON null.
        queue_ready.append(or_(_queues.c.policy.is_(None), _queues.c.policy == JSON.NULL))
    queue_settings = (
        select(_queues.c.settings).where(_queues.c.id == _jobs.c.queue_id).scalar_subquery()
    )
    return (
        update(_jobs)
        .where(
            _jobs.c.id == bindparam("p_id"),
            _jobs.c.attempt_count == bindparam("p_attempt"),
            # Not ``in_``: an expanding IN is rendered again at every execution.
            or_(*(_jobs.c.status == status for status in CLAIMABLE)),
            or_(_jobs.c.available_at.is_(None), _jobs.c.available_at <= bindparam("p_now")),
            exists().where(*queue_ready),
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
            _jobs.c.job_type,
            _jobs.c.payload,
            _jobs.c.max_attempts,
            queue_settings.label("queue_settings"),
        )
    )


_CLAIM = _claim_statement(unlimited=False)
_CLAIM_UNLIMITED = _claim_statement(unlimited=True)
# The running attempt row a claim writes, from the claim's own parameters.
_RUNNING_ATTEMPT = {
    "id": bindparam("p_attempt_id", type_=_attempts.c.id.type),
    "job_id": bindparam("p_id", type_=_attempts.c.job_id.type),
    "number": bindparam("p_next", type_=_attempts.c.number.type),
    "status": literal(AttemptStatus.RUNNING, _attempts.c.status.type),
    "worker_name": bindparam("p_worker", type_=_attempts.c.worker_name.type),
    "started_at": bindparam("p_now", type_=_attempts.c.started_at.type),
}
_INSERT_ATTEMPT = insert(_attempts).values(_RUNNING_ATTEMPT)
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


def _with_attempt(claim: Any) -> Any:
    """The claim and its running attempt row in one statement (PostgreSQL's data-modifying CTE)."""
    claimed = claim.cte("claimed")
    attempt = (
        insert(_attempts)
        .from_select(
            list(_RUNNING_ATTEMPT), select(*_RUNNING_ATTEMPT.values()).select_from(claimed)
        )
        .cte("attempt")
    )
    return select(claimed).add_cte(attempt)


# On PostgreSQL every statement is a round trip, so the claim and the success are
# one statement each (the attempt row written in the same statement); SQLite runs
# in-process and has no data-modifying CTEs, so it runs the two statements.  All
# run on the DBAPI connection (``app.prepared``): SQLAlchemy's execution of
# these few fixed statements cost the worker more than the SQL itself.
_CLAIM_ONE_TRIP = {
    False: Prepared(_with_attempt(_CLAIM)),
    True: Prepared(_with_attempt(_CLAIM_UNLIMITED)),
}
_CLAIM_ONLY = {False: Prepared(_CLAIM), True: Prepared(_CLAIM_UNLIMITED)}
_ADD_ATTEMPT = Prepared(_INSERT_ATTEMPT)
_succeeded = _SUCCEED.returning(_jobs.c.id).cte("succeeded")
_SUCCEED_ONE_TRIP = Prepared(
    select(func.count())
    .select_from(_succeeded)
    .add_cte(_ATTEMPT_SUCCEEDED.where(exists(select(_succeeded.c.id))).cte("attempt_done"))
)
_SUCCEED_JOB = Prepared(_SUCCEED)
_SUCCEED_ATTEMPT = Prepared(_ATTEMPT_SUCCEEDED)


def claim(
    database_url: str,
    job_id: uuid.UUID,
    attempt: int,
    worker: str,
    *,
    lease_seconds: float,
    unlimited: bool = False,
) -> Claimed | None:
    """Move the job to ``processing`` for attempt ``attempt + 1``, or return None.

    ``unlimited`` claims only a job whose queue has no policy, and returns None,
    touching nothing else, when it has one or the job is not claimable: the
    worker's first try, before it asks the policy (``policies.hold_back``) and
    claims again.  Most queues have no policy, so most jobs cost one claim and
    no policy read.
    """
    now = utcnow()
    params = {
        "p_id": job_id,
        "p_attempt": attempt,
        "p_next": attempt + 1,
        "p_now": now,
        "p_worker": worker,
        "p_lease": now + timedelta(seconds=lease_seconds),
        "p_attempt_id": uuid.uuid4(),
    }
    with write(database_url) as writer:
        if writer.dialect.name == "postgresql":
            row = writer.one_or_none(_CLAIM_ONE_TRIP[unlimited], params)
        else:
            row = writer.one_or_none(_CLAIM_ONLY[unlimited], params)
            if row is not None:
                writer.execute(_ADD_ATTEMPT, params)
    if row is None:
        if not unlimited:
            with session_scope(database_url) as session:
                reschedule_unclaimable(session, job_id, attempt, now)
        return None
    return Claimed(
        job_type=row.job_type,
        payload=row.payload,
        attempt=attempt + 1,
        max_attempts=row.max_attempts,
        queue_settings=QueueSettings.from_stored(row.queue_settings),
    )


def waiting_job(
    session: Session, job_id: uuid.UUID, attempt: int
) -> tuple[Job, bool, dict[str, Any] | None] | None:
    """The job, if attempt ``attempt + 1`` may still claim it, with its queue's state."""
    row = session.execute(
        select(Job, Queue.is_active, Queue.settings)
        .join(Queue, Queue.id == Job.queue_id)
        .where(Job.id == job_id, Job.attempt_count == attempt, Job.status.in_(CLAIMABLE))
    ).one_or_none()
    if row is None:
        return None
    job, active, settings = row
    return job, active, settings


def reschedule_unclaimable(
    session: Session, job_id: uuid.UUID, attempt: int, now: datetime
) -> None:
    """Give a still-waiting job a new message when this one came too early or while paused.

    A job of a paused queue is marked unpublished; resume publishes it.  A
    message that arrived before the job's time is sent again with its ETA, and
    one refused while the queue was paused but resumed since is sent again.
    Cancelled, finished, running or superseded jobs need nothing: the message
    is simply dropped.
    """
    row = waiting_job(session, job_id, attempt)
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
        stage(session, Dispatch.for_job(job, QueueSettings.from_stored(settings)))


def backoff_seconds(attempt: int, settings: QueueSettings) -> float:
    """Exponential backoff with full jitter for the retry after ``attempt``."""
    base = float(settings.retry_backoff_seconds)
    ceiling = float(settings.retry_backoff_max_seconds)
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


def processing(job_id: uuid.UUID, attempt: int) -> Any:
    """An UPDATE of the job while attempt ``attempt`` of it is processing, and only then."""
    return update(Job).where(
        Job.id == job_id, Job.status == JobStatus.PROCESSING, Job.attempt_count == attempt
    )


def record_success(database_url: str, job_id: uuid.UUID, claimed: Claimed, result: Any) -> bool:
    """Mark the attempt and the job succeeded; False when the job moved on meanwhile."""
    params = {"p_id": job_id, "p_attempt": claimed.attempt, "p_now": utcnow(), "p_result": result}
    with write(database_url) as writer:
        if writer.dialect.name == "postgresql":
            return bool(writer.one_or_none(_SUCCEED_ONE_TRIP, params)[0])
        changed = writer.execute(_SUCCEED_JOB, params)
        if changed:
            writer.execute(_SUCCEED_ATTEMPT, params)
    return bool(changed)


def end_attempt(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    max_attempts: int,
    settings: QueueSettings,
    error: str,
    now: datetime,
    after: AfterFailure = QUEUE_BACKOFF,
) -> JobStatus | None:
    """Move a processing job on after a failed or lost attempt: retry later, or fail."""
    retry = after.retry and attempt < max_attempts
    if retry:
        delay = after.delay_seconds
        if delay is None:
            delay = backoff_seconds(attempt, settings)
        available_at = now + timedelta(seconds=delay)
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
        processing(job_id, attempt).values(
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
    database_url: str,
    job_id: uuid.UUID,
    claimed: Claimed,
    error: str,
    trace: str | None,
    after: AfterFailure = QUEUE_BACKOFF,
) -> JobStatus | None:
    """Record a failed attempt; retry as ``after`` says while attempts remain, else fail."""
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
            after=after,
        )
        if outcome is not None:
            finish_attempt(
                session, job_id, claimed.attempt, AttemptStatus.FAILED, now, error, trace
            )
    return outcome


def cancel_revoked(database_url: str, job_id: uuid.UUID, attempt: int, *, terminated: bool) -> bool:
    """Cancel the job whose Celery task for attempt ``attempt + 1`` was revoked.

    Celery revokes come from any client (``celery control revoke``, Flower,
    TaskForge's own cancel).  A job still waiting for that attempt is cancelled;
    a job running it is cancelled only when the revoke ``terminated`` its process
    (a plain revoke lets a running task finish, in Celery as here).  Each is a
    compare-and-set: a finished, retried or already cancelled job stays as it is.
    Tell whether this call cancelled the job.
    """
    now = utcnow()
    cancelled = {"status": JobStatus.CANCELLED, "completed_at": now, "updated_at": now}
    with session_scope(database_url) as session:
        if rowcount(
            session,
            update(Job)
            .where(Job.id == job_id, Job.attempt_count == attempt, Job.status.in_(CLAIMABLE))
            .values(**cancelled),
        ):
            return True
        if terminated and rowcount(
            session, processing(job_id, attempt + 1).values(lease_expires_at=None, **cancelled)
        ):
            finish_attempt(
                session, job_id, attempt + 1, AttemptStatus.CANCELLED, now, CANCELLED_ERROR
            )
            return True
    return False


def timeout_error(seconds: float) -> str:
    """The error of an attempt that ran past its time limit of ``seconds``."""
    return f"Timed out after {seconds:g} seconds"


def check_result(value: Any) -> None:
    """Refuse a handler result that cannot be stored as JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"The handler returned a result that is not JSON: {exc}") from None
