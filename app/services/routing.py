"""Job types: a job this worker has no handler for goes to a worker of its queue that has one.

No attempt is spent on the way: the job is not claimed.  The message goes to the
chosen worker's own (worker-direct) queue and the job is marked held, so the sweep
publishes it again if that worker dies first (``outbox.republish_held_messages``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

from sqlalchemy import update

from app.celery_names import job_queue_name
from app.db import rowcount, session_scope
from app.models import Job, JobStatus, utcnow
from app.services.execution import (
    CLAIMABLE,
    Outcome,
    reschedule_unclaimable,
    waiting_job,
)
from app.services.outbox import Dispatch, HandOff, stage
from app.services.queue_settings import QueueSettings
from app.services.workers import live_runners

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
) -> Outcome:
    """Pass a job this worker has no handler for to a live worker of its queue that has one.

    No attempt is spent: the job is not claimed.  The message goes to the other
    worker's own (worker-direct) queue, and the job is marked held from now, so
    the sweeper re-queues it if that worker dies first.  Without such a worker,
    or after ``MAX_HAND_OFFS`` hand-offs, the job fails at once, without retries.
    """
    now = utcnow()
    with session_scope(database_url) as session:
        row = waiting_job(session, job_id, attempt)
        if row is None:
            return Outcome.DROPPED
        job, active, settings = row
        if not active or (job.available_at is not None and job.available_at > now):
            reschedule_unclaimable(session, job_id, attempt, now)
            return Outcome.DROPPED
        targets = [
            runner.hostname
            for runner in live_runners(session, celery_queue=job_queue_name(job.queue_id))
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
                return Outcome.DROPPED
            item = replace(Dispatch.for_job(job, QueueSettings.from_stored(settings)), eta=None)
            stage(session, HandOff(item, hostname=random.choice(targets), hops=hops + 1))
            return Outcome.HANDED_ON
        error = unrunnable_error(job_type)
        if targets:
            error += f"; handed on {hops} times without reaching one"
        failed = rowcount(
            session,
            update(Job)
            .where(*still_waiting)
            .values(status=JobStatus.FAILED, error=error, completed_at=now, updated_at=now),
        )
    return Outcome.FAILED if failed else Outcome.DROPPED
