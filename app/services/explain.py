"""Explain a job: why a waiting job does not run (each blocker with its numbers), or how it went.

A waiting job is run through every registered check (:data:`CHECKS`, extended
with :func:`register_check`, e.g. by queue policies); each names one blocker or
none.  Every blocker found is listed, the first being the one to fix first.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.broker import Head
from app.celery_names import (
    RELAY_EVERY_SECONDS,
    REPUBLISH_LOST_EVERY_SECONDS,
    SWEEP_EVERY_SECONDS,
)
from app.models import Job, JobAttempt, JobStatus, Queue, utcnow
from app.services import policies
from app.services.actors import Actor
from app.services.jobs import get_job
from app.services.outbox import (
    ETA_HORIZON,
    LOST_MESSAGE_AFTER,
    OVERTAKEN_AFTER,
    RELAY_GRACE,
    overtaken,
)
from app.services.queue_settings import QueueSettings
from app.services.workers import BUILTIN_JOB_TYPES, Runner, live_runners

WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED)


@dataclass(frozen=True)
class Blocker:
    """One reason a job does not start, with the numbers behind it."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    """What the checks read about a waiting job, loaded once."""

    session: Session
    job: Job
    queue: Queue
    settings: QueueSettings
    runners: list[Runner]
    now: datetime
    lease_seconds: float
    broker_depth: Callable[[str], int | None] | None
    broker_head: Callable[[str, int], Head | None] | None = None

    @property
    def due(self) -> bool:
        """Tell whether the job may start now (no later start time)."""
        return self.job.available_at is None or self.job.available_at <= self.now


Check = Callable[[Facts], Blocker | None]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _in(moment: datetime, now: datetime) -> float:
    return round(max(0.0, (moment - now).total_seconds()), 3)


def queue_paused(facts: Facts) -> Blocker | None:
    """The queue is paused: nothing of it starts until it is resumed."""
    if facts.queue.is_active:
        return None
    return Blocker(
        "queue_paused",
        f"Queue '{facts.queue.name}' is paused; its jobs start when it is resumed.",
        {"queue_id": str(facts.queue.id), "queue_name": facts.queue.name},
    )


def not_due(facts: Facts) -> Blocker | None:
    """The job waits for its scheduled time, or for the backoff after a failed attempt."""
    job = facts.job
    if facts.due:
        return None
    assert job.available_at is not None
    details = {"at": _iso(job.available_at), "in_seconds": _in(job.available_at, facts.now)}
    if job.attempt_count:
        return Blocker(
            "retry_backoff",
            f"Attempt {job.attempt_count} of {job.max_attempts} failed; the next may start at "
            f"{_iso(job.available_at)} (in {details['in_seconds']:g} s).",
            {**details, "attempts": job.attempt_count, "last_error": job.error},
        )
    return Blocker(
        "scheduled",
        f"Scheduled for {_iso(job.available_at)} (in {details['in_seconds']:g} s).",
        details,
    )


def no_live_worker(facts: Facts) -> Blocker | None:
    """No live worker consumes the queue's Celery queue."""
    if facts.runners:
        return None
    required = facts.settings.worker_type
    kind = f" of type '{required}'" if required else ""
    return Blocker(
        "no_live_worker",
        f"No live worker{kind} consumes queue '{facts.queue.name}'.",
        {"celery_queue": facts.queue.celery_queue, "worker_type": required, "live_workers": 0},
    )


def no_worker_for_job_type(facts: Facts) -> Blocker | None:
    """Live workers consume the queue, but all advertised job types without this one."""
    job_type = facts.job.job_type
    if not facts.runners or job_type in BUILTIN_JOB_TYPES:
        return None
    if any(runner.job_types is None or runner.runs(job_type) for runner in facts.runners):
        return None
    advertised = sorted(set().union(*(runner.job_types or () for runner in facts.runners)))
    return Blocker(
        "no_worker_for_job_type",
        f"None of the {len(facts.runners)} live worker(s) of this queue has a handler for "
        f"'{job_type}'.",
        {"job_type": job_type, "live_workers": len(facts.runners), "advertised": advertised},
    )


def message_missing(facts: Facts) -> Blocker | None:
    """The job's wake-up message is not on the broker, and when it will be."""
    job = facts.job
    if not facts.queue.is_active:
        return None
    if job.published_at is None:
        if _stamp_pending(facts):
            return None
        if job.available_at is not None and job.available_at - facts.now > ETA_HORIZON:
            at = job.available_at - ETA_HORIZON
            why = "it is due later than the ETA horizon; the relay publishes it"
        else:
            at = max(facts.now, job.updated_at + RELAY_GRACE)
            why = "the relay publishes unpublished due jobs"
        at += timedelta(seconds=RELAY_EVERY_SECONDS)
        return Blocker(
            "message_unpublished",
            f"No message for this job is on the broker yet: {why} by {_iso(at)}.",
            {"republish_by": _iso(at), "in_seconds": _in(at, facts.now), "by": "relay"},
        )
    if job.held_since is not None:
        at = job.held_since + timedelta(seconds=facts.lease_seconds + SWEEP_EVERY_SECONDS)
        return Blocker(
            "message_held",
            "The message is held by one worker (an ETA or a hand-off); if that worker does not "
            f"take the job, the sweeper publishes it again by {_iso(at)}.",
            {"held_since": _iso(job.held_since), "republish_by": _iso(at), "by": "sweep"},
        )
    if facts.broker_depth is None or not facts.due:
        return None
    every = timedelta(seconds=REPUBLISH_LOST_EVERY_SECONDS)
    if _overtaken(facts):
        at = max(job.published_at + OVERTAKEN_AFTER, facts.now) + every
        why = "a later message of its queue and priority is ahead of where it was"
    elif facts.broker_depth(facts.queue.celery_queue) == 0:
        at = max(job.published_at + LOST_MESSAGE_AFTER, facts.now) + every
        why = "its queue holds no message on the broker"
    else:
        return None
    return Blocker(
        "message_lost",
        f"The job was published but its message is gone ({why}: lost, or being delivered); "
        f"the republisher publishes it again by {_iso(at)}.",
        {"published_at": _iso(job.published_at), "republish_by": _iso(at), "by": "republish"},
    )


def _stamp_pending(facts: Facts) -> bool:
    """Tell whether an unstamped job was most likely just published.

    The submitting process sends the message right after its commit and stamps
    ``published_at`` in the background (``tasks.publisher.PublishedStamps``), so
    for a moment a published job looks unpublished.  Within the relay's grace, a
    queue with messages on the broker (or a broker not asked) is taken as that
    moment; an empty queue is not.
    """
    job = facts.job
    if facts.now - job.updated_at >= RELAY_GRACE:
        return False
    if job.available_at is not None and job.available_at - facts.now > ETA_HORIZON:
        return False
    return facts.broker_depth is None or facts.broker_depth(facts.queue.celery_queue) != 0


def _overtaken(facts: Facts) -> bool:
    """Tell whether the oldest message at the job's priority came after the job's own."""
    if facts.broker_head is None:
        return False
    return facts.job.id in overtaken(facts.session, facts.broker_head, [facts.job], facts.now)


def jobs_ahead(facts: Facts) -> Blocker | None:
    """Due jobs of the queue with a higher priority, or equal and older, start first."""
    job = facts.job
    if not facts.due:
        return None
    ahead = facts.session.scalar(
        select(func.count()).where(
            Job.queue_id == job.queue_id,
            Job.status.in_(WAITING),
            Job.id != job.id,
            or_(Job.available_at.is_(None), Job.available_at <= facts.now),
            or_(
                Job.priority > job.priority,
                (Job.priority == job.priority) & (Job.created_at < job.created_at),
            ),
        )
    )
    if not ahead:
        return None
    running = facts.session.scalar(
        select(func.count()).where(Job.queue_id == job.queue_id, Job.status == JobStatus.PROCESSING)
    )
    return Blocker(
        "jobs_ahead",
        f"{ahead} job(s) of equal or higher priority are ahead of it in the queue "
        f"({running} running now).",
        {"ahead": int(ahead), "running": int(running or 0), "live_workers": len(facts.runners)},
    )


def policy_limits(facts: Facts) -> Blocker | None:
    """The queue's policy (a rate limit, a concurrency cap) holds the job back."""
    if not facts.due or not facts.queue.policy:
        return None
    held = policies.why_held(facts.session, facts.job, facts.queue)
    if not held:
        return None
    first = held[0]
    return Blocker(
        first.code,
        " ".join(h.message for h in held),
        {**first.details, "limits": [{"code": h.code, **h.details} for h in held]},
    )


CHECKS: list[Check] = [
    queue_paused,
    not_due,
    no_live_worker,
    no_worker_for_job_type,
    policy_limits,
    message_missing,
    jobs_ahead,
]


def register_check(check: Check) -> None:
    """Add a blocker check (e.g. a queue policy's), run after the built-in ones."""
    if check not in CHECKS:
        CHECKS.append(check)


@dataclass(frozen=True)
class Timings:
    """How a job's time was spent so far: waiting, running, and between retries."""

    waited_seconds: float | None
    ran_seconds: float
    retry_wait_seconds: float
    attempts: int
    retries: int
    total_seconds: float | None


@dataclass(frozen=True)
class Explanation:
    """Where a job stands and why."""

    job: Job
    state: str
    summary: str
    blockers: list[Blocker]
    timings: Timings


def _timings(job: Job, attempts: list[JobAttempt], now: datetime) -> Timings:
    due = max(job.created_at, job.scheduled_for or job.created_at)
    waited = None
    if attempts:
        waited = max(0.0, (attempts[0].started_at - due).total_seconds())
    ran = sum(((a.finished_at or now) - a.started_at).total_seconds() for a in attempts)
    retry_wait = sum(
        max(0.0, (later.started_at - earlier.finished_at).total_seconds())
        for earlier, later in itertools.pairwise(attempts)
        if earlier.finished_at is not None
    )
    total = (job.completed_at - job.created_at).total_seconds() if job.completed_at else None
    return Timings(
        waited_seconds=waited,
        ran_seconds=round(ran, 3),
        retry_wait_seconds=round(retry_wait, 3),
        attempts=len(attempts),
        retries=max(0, len(attempts) - 1),
        total_seconds=total,
    )


def explain_job(
    session: Session,
    *,
    actor: Actor,
    job_id: str | uuid.UUID,
    lease_seconds: float,
    broker_depth: Callable[[str], int | None] | None = None,
    broker_head: Callable[[str, int], Head | None] | None = None,
) -> Explanation:
    """Say why one of the actor's jobs is not running, or how it ran."""
    job = get_job(session, actor=actor, job_id=job_id)
    now = utcnow()
    attempts = list(
        session.scalars(
            select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.number)
        )
    )
    timings = _timings(job, attempts, now)
    if job.status is JobStatus.PROCESSING:
        summary = (
            f"Running attempt {job.attempt_count} of {job.max_attempts} on {job.worker_name}"
            f" since {_iso(job.started_at) if job.started_at else 'now'}."
        )
        return Explanation(job, "running", summary, [], timings)
    if job.status not in WAITING:
        summary = (
            f"{job.status.value.capitalize()} after {timings.attempts} attempt(s): waited "
            f"{timings.waited_seconds or 0:g} s, ran {timings.ran_seconds:g} s, "
            f"{timings.retry_wait_seconds:g} s between retries."
        )
        return Explanation(job, "finished", summary, [], timings)
    queue = session.get(Queue, job.queue_id)
    assert queue is not None
    facts = Facts(
        session=session,
        job=job,
        queue=queue,
        settings=QueueSettings.from_stored(queue.settings),
        runners=live_runners(session, celery_queue=queue.celery_queue),
        now=now,
        lease_seconds=lease_seconds,
        broker_depth=broker_depth,
        broker_head=broker_head,
    )
    blockers = [found for check in CHECKS if (found := check(facts)) is not None]
    summary = (
        blockers[0].message
        if blockers
        else "Nothing blocks it: a live worker should claim it momentarily."
    )
    return Explanation(job, "waiting", summary, blockers, timings)
