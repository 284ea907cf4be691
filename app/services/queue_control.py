"""Queue control: purge, dead letters and their staged redrive, bulk retry and bulk cancel.

Every change is a compare-and-set per job (or one conditional UPDATE for a
purge), so concurrent operators and workers never act twice on one job, and
every action writes its audit event in the same transaction.  These are
organization-admin actions: a member or viewer may read dead letters, not act.

A message already on the broker for a job these functions cancel needs no
removal: the worker's claim only takes a pending or scheduled job, so it is
acknowledged and dropped (``app.services.execution``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.db import rowcount
from app.errors import ValidationFailed
from app.models import AuditEvent, Job, JobAttempt, JobStatus, Queue, utcnow
from app.services import audit
from app.services.actors import Actor, Permission
from app.services.audit import AuditAction
from app.services.jobs import JOB_TYPE_PATTERN
from app.services.outbox import Dispatch, stage
from app.services.pagination import Page, check_page_args
from app.services.queue_settings import QueueSettings
from app.services.queues import get_queue
from app.services.validation import check_datetime, check_range, check_text

WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED)
# One redrive or bulk action touches at most this many jobs; run it again for more.
BULK_MAX = 1000
ERROR_FILTER_MAX = 200
REDRIVE_RATE_MAX = 1000.0
DEFAULT_STOP_AFTER_FAILURES = 3


@dataclass(frozen=True)
class JobFilter:
    """Which jobs of a queue an operation takes: by type, time, and error text."""

    job_type: str | None = None
    error: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def checked(self) -> JobFilter:
        """Return the filter with its values checked (times in UTC)."""
        if self.error is not None:
            check_text(self.error, "error")
            if not 1 <= len(self.error) <= ERROR_FILTER_MAX:
                raise ValidationFailed.field("error", f"1-{ERROR_FILTER_MAX} characters.")
        since = check_datetime(self.since, "since") if self.since else None
        until = check_datetime(self.until, "until") if self.until else None
        if self.job_type is not None and not JOB_TYPE_PATTERN.match(self.job_type):
            raise ValidationFailed.field(
                "job_type", "1-100 characters of letters, digits, '_', '.', ':' or '-'."
            )
        return JobFilter(job_type=self.job_type, error=self.error, since=since, until=until)

    def conditions(self, time_column: Any) -> list[ColumnElement[bool]]:
        """SQL conditions of the filter, its time range on ``time_column``."""
        found: list[ColumnElement[bool]] = []
        if self.job_type is not None:
            found.append(Job.job_type == self.job_type)
        if self.error is not None:
            found.append(Job.error.icontains(self.error, autoescape=True))
        if self.since is not None:
            found.append(time_column >= self.since)
        if self.until is not None:
            found.append(time_column < self.until)
        return found

    def as_details(self) -> dict[str, Any]:
        """The filter as JSON for the audit trail."""
        return {
            "job_type": self.job_type,
            "error": self.error,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _queue_for_action(session: Session, actor: Actor, queue_id: str | uuid.UUID) -> Queue:
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.ORG_ADMIN)
    return queue


def _dispatch_if_active(session: Session, queue: Queue, jobs: Sequence[Job]) -> None:
    # A paused queue's jobs stay unpublished; resume publishes them.
    if queue.is_active:
        settings = QueueSettings.from_stored(queue.settings)
        for job in jobs:
            stage(session, Dispatch.for_job(job, settings))


# --- purge ---------------------------------------------------------------------------


def purge_queue(
    session: Session, *, actor: Actor, queue_id: str | uuid.UUID, confirm_name: str
) -> int:
    """Cancel every waiting (pending or scheduled) job of a queue; return how many.

    One conditional UPDATE: a job a worker claims meanwhile is processing and
    stays untouched; a second purge finds nothing.  ``confirm_name`` must repeat
    the queue's name.
    """
    queue = _queue_for_action(session, actor, queue_id)
    check_text(confirm_name, "confirm_name")
    if confirm_name != queue.name:
        raise ValidationFailed.field("confirm_name", "Must repeat the queue's name exactly.")
    now = utcnow()
    purged = rowcount(
        session,
        update(Job)
        .where(Job.queue_id == queue.id, Job.status.in_(WAITING))
        .values(status=JobStatus.CANCELLED, completed_at=now, updated_at=now),
    )
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=AuditAction.QUEUE_PURGE,
        target_type="queue",
        target_id=queue.id,
        count=purged,
    )
    return purged


# --- dead letters --------------------------------------------------------------------


def _redriven() -> Any:
    later = aliased(Job)
    return exists().where(later.redriven_from == Job.id)


def _dead_letters(queue: Queue, job_filter: JobFilter) -> Select[Any]:
    """The queue's dead letters: failed jobs not redriven yet (``ix_jobs_queue_status_created``)."""
    return select(Job).where(
        Job.queue_id == queue.id,
        Job.status == JobStatus.FAILED,
        ~_redriven(),
        *job_filter.conditions(Job.completed_at),
    )


@dataclass(frozen=True)
class DeadLetter:
    """A failed job with the history of its attempts."""

    job: Job
    attempts: Sequence[JobAttempt]


def list_dead_letters(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    page: int,
    limit: int,
    job_filter: JobFilter | None = None,
) -> Page[DeadLetter]:
    """List a queue's dead letters, most recently failed first, with their attempts."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.JOB_READ)
    check_page_args(page, limit)
    query = _dead_letters(queue, (job_filter or JobFilter()).checked())
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    jobs = session.scalars(
        query.order_by(Job.completed_at.desc(), Job.id.desc())
        .limit(limit)
        .offset((page - 1) * limit)
    ).all()
    attempts: dict[uuid.UUID, list[JobAttempt]] = {job.id: [] for job in jobs}
    if jobs:
        for attempt in session.scalars(
            select(JobAttempt)
            .where(JobAttempt.job_id.in_(list(attempts)))
            .order_by(JobAttempt.job_id, JobAttempt.number)
        ):
            attempts[attempt.job_id].append(attempt)
    return Page(
        items=[DeadLetter(job=job, attempts=attempts[job.id]) for job in jobs],
        page=page,
        limit=limit,
        total=int(total or 0),
    )


@dataclass(frozen=True)
class Redrive:
    """What a redrive did (or, dry, would do): original job → new job, and when it may run."""

    redrive_id: uuid.UUID | None
    dry_run: bool
    planned: list[tuple[Job, datetime]]
    created: list[Job]
    skipped: int

    @property
    def count(self) -> int:
        """How many jobs run again (would, on a dry run)."""
        return len(self.planned) if self.dry_run else len(self.created)


def redrive_dead_letters(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    job_filter: JobFilter | None = None,
    dry_run: bool = True,
    max_per_second: float = 10.0,
    stop_after_failures: int = DEFAULT_STOP_AFTER_FAILURES,
    limit: int = BULK_MAX,
) -> Redrive:
    """Run a queue's dead letters again as new jobs, at most ``max_per_second`` starting per second.

    Each new job keeps its lineage (``redriven_from``, unique: concurrent redrives
    of one dead letter make one new job) and starts at its slot in the rate
    (``available_at``), the earliest-failed first.  The redrive watch
    (:func:`halt_failing_redrives`) cancels the rest once ``stop_after_failures``
    of its jobs failed again.  A dry run lists what would run, changing nothing.
    """
    queue = _queue_for_action(session, actor, queue_id)
    job_filter = (job_filter or JobFilter()).checked()
    if not 0 < max_per_second <= REDRIVE_RATE_MAX:
        raise ValidationFailed.field(
            "max_per_second", f"Must be above 0 and at most {REDRIVE_RATE_MAX:g}."
        )
    check_range(stop_after_failures, "stop_after_failures", 1, BULK_MAX)
    check_range(limit, "limit", 1, BULK_MAX)
    originals = session.scalars(
        _dead_letters(queue, job_filter).order_by(Job.completed_at, Job.id).limit(limit)
    ).all()
    now = utcnow()
    slots = [now + timedelta(seconds=i / max_per_second) for i in range(len(originals))]
    if dry_run:
        return Redrive(
            redrive_id=None,
            dry_run=True,
            planned=list(zip(originals, slots, strict=True)),
            created=[],
            skipped=0,
        )
    event = audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=AuditAction.REDRIVE,
        target_type="queue",
        target_id=queue.id,
        details={
            "filter": job_filter.as_details(),
            "max_per_second": max_per_second,
            "stop_after_failures": stop_after_failures,
        },
    )
    max_attempts = QueueSettings.from_stored(queue.settings).max_attempts
    created: list[Job] = []
    planned: list[tuple[Job, datetime]] = []
    for original, slot in zip(originals, slots, strict=True):
        future = slot > now
        job = Job(
            id=uuid.uuid4(),
            organization_id=original.organization_id,
            queue_id=queue.id,
            job_type=original.job_type,
            payload=original.payload,
            status=JobStatus.SCHEDULED if future else JobStatus.PENDING,
            priority=original.priority,
            max_attempts=max_attempts,
            attempt_count=0,
            dispatch_generation=0,
            available_at=slot if future else None,
            redriven_from=original.id,
            redrive_id=event.id,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(job)
                session.flush()
        except IntegrityError:
            # Another redrive took this dead letter first.
            continue
        created.append(job)
        planned.append((original, slot))
    event.count = len(created)
    _dispatch_if_active(session, queue, created)
    session.flush()
    return Redrive(
        redrive_id=event.id,
        dry_run=False,
        planned=planned,
        created=created,
        skipped=len(originals) - len(created),
    )


def halt_failing_redrives(session: Session) -> int:
    """Cancel the waiting jobs of every redrive whose jobs fail again; return how many.

    A redrive fails again when ``stop_after_failures`` of its jobs have a failed
    attempt (an error, terminal or while retrying).  Run by beat's redrive watch.
    """
    waiting = aliased(Job)
    failing = (
        select(Job.redrive_id, func.count())
        .where(
            Job.redrive_id.is_not(None),
            Job.error.is_not(None),
            exists().where(waiting.redrive_id == Job.redrive_id, waiting.status.in_(WAITING)),
        )
        .group_by(Job.redrive_id)
    )
    halted = 0
    for redrive_id, failures in session.execute(failing).all():
        event = session.get(AuditEvent, redrive_id)
        threshold = int(
            (event.details if event else {}).get("stop_after_failures", DEFAULT_STOP_AFTER_FAILURES)
        )
        if failures < threshold:
            continue
        now = utcnow()
        cancelled = rowcount(
            session,
            update(Job)
            .where(Job.redrive_id == redrive_id, Job.status.in_(WAITING))
            .values(
                status=JobStatus.CANCELLED,
                error=f"Redrive stopped: {failures} of its jobs failed again",
                completed_at=now,
                updated_at=now,
            ),
        )
        if cancelled and event is not None:
            audit.record(
                session,
                actor=None,
                organization_id=event.organization_id,
                action=AuditAction.REDRIVE_HALTED,
                target_type="queue",
                target_id=event.target_id,
                count=cancelled,
                details={"redrive_id": str(redrive_id), "failures": failures},
            )
        halted += cancelled
    return halted


# --- bulk retry and cancel -----------------------------------------------------------


@dataclass(frozen=True)
class BulkResult:
    """How many jobs matched a bulk action and how many it changed (the rest moved on)."""

    matched: int
    changed: int


BULK_RETRY_STATUSES = frozenset({JobStatus.FAILED})
BULK_CANCEL_STATUSES = frozenset(WAITING)


def _check_statuses(
    statuses: Sequence[JobStatus] | None, allowed: frozenset[JobStatus]
) -> list[JobStatus]:
    chosen = list(statuses) if statuses else sorted(allowed)
    wrong = [status.value for status in chosen if status not in allowed]
    if wrong:
        names = ", ".join(sorted(status.value for status in allowed))
        raise ValidationFailed.field(
            "status", f"Only {names} jobs qualify, not {', '.join(wrong)}."
        )
    return chosen


def bulk_retry(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    job_filter: JobFilter | None = None,
    statuses: Sequence[JobStatus] | None = None,
    limit: int = BULK_MAX,
) -> BulkResult:
    """Retry a queue's failed jobs matching the filter, each with a fresh attempt budget.

    Each job is one compare-and-set on the status and dispatch generation read:
    of concurrent bulk retries (or single retries) exactly one retries a job, and
    a job that was retried, ran and failed again since it was read is left alone.
    """
    queue = _queue_for_action(session, actor, queue_id)
    job_filter = (job_filter or JobFilter()).checked()
    chosen = _check_statuses(statuses, BULK_RETRY_STATUSES)
    check_range(limit, "limit", 1, BULK_MAX)
    candidates = session.execute(
        select(Job.id, Job.dispatch_generation)
        .where(
            Job.queue_id == queue.id,
            Job.status.in_(chosen),
            *job_filter.conditions(Job.completed_at),
        )
        .order_by(Job.completed_at, Job.id)
        .limit(limit)
    ).all()
    retried: list[uuid.UUID] = []
    for job_id, generation in candidates:
        changed = rowcount(
            session,
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.FAILED,
                Job.dispatch_generation == generation,
            )
            .values(
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
        if changed:
            retried.append(job_id)
    jobs = session.scalars(select(Job).where(Job.id.in_(retried))).all() if retried else []
    _dispatch_if_active(session, queue, jobs)
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=AuditAction.BULK_RETRY,
        target_type="queue",
        target_id=queue.id,
        count=len(retried),
        details={"filter": job_filter.as_details(), "matched": len(candidates)},
    )
    return BulkResult(matched=len(candidates), changed=len(retried))


def bulk_cancel(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    job_filter: JobFilter | None = None,
    statuses: Sequence[JobStatus] | None = None,
    limit: int = BULK_MAX,
) -> BulkResult:
    """Cancel a queue's waiting jobs matching the filter (created in the time range).

    Each job is one compare-and-set on its status: a job a worker claims first
    runs, and of concurrent cancels exactly one counts it.
    """
    queue = _queue_for_action(session, actor, queue_id)
    job_filter = (job_filter or JobFilter()).checked()
    chosen = _check_statuses(statuses, BULK_CANCEL_STATUSES)
    check_range(limit, "limit", 1, BULK_MAX)
    candidates = session.scalars(
        select(Job.id)
        .where(
            Job.queue_id == queue.id,
            Job.status.in_(chosen),
            *job_filter.conditions(Job.created_at),
        )
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    ).all()
    cancelled = 0
    for job_id in candidates:
        now = utcnow()
        cancelled += rowcount(
            session,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(chosen))
            .values(status=JobStatus.CANCELLED, completed_at=now, updated_at=now),
        )
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=AuditAction.BULK_CANCEL,
        target_type="queue",
        target_id=queue.id,
        count=cancelled,
        details={"filter": job_filter.as_details(), "matched": len(candidates)},
    )
    return BulkResult(matched=len(candidates), changed=cancelled)
