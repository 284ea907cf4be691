"""Leases: how a running attempt proves its worker alive, and what happens when it cannot.

A worker renews the lease of every attempt it runs, three times per lease
(``TASKFORGE_LEASE_SECONDS``, from ``tasks.executor.LeaseKeeper``).  A worker that
dies (SIGKILL, OOM, power) stops renewing: once the lease runs out,
:func:`sweep_expired_leases` (beat, every 5 s) records the attempt as lost and
queues the job again, or fails it once its attempts are spent.  A worker that stops
on purpose hands its jobs back at once (:func:`hand_back_jobs`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import ColumnElement, select

from app.db import get_engine, session_scope
from app.models import AttemptStatus, Job, JobStatus, Queue, utcnow
from app.services.execution import end_attempt, finish_attempt, processing
from app.services.outbox import BATCH
from app.services.queue_settings import QueueSettings

logger = logging.getLogger(__name__)

LOST_ERROR = "The worker running this attempt stopped responding (its lease expired)"
SHUTDOWN_ERROR = "The worker running this attempt shut down before it finished"


def renew_leases(
    database_url: str, running: Sequence[tuple[uuid.UUID, int]], *, lease_seconds: float
) -> None:
    """Push the leases of ``running`` attempts one lease into the future."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    with get_engine(database_url).begin() as connection:
        for job_id, attempt in running:
            connection.execute(
                processing(job_id, attempt).values(
                    lease_expires_at=expires, updated_at=Job.updated_at
                )
            )


def _end_lost_attempts(database_url: str, condition: ColumnElement[bool], error: str) -> int:
    """Record the running attempts of jobs matching ``condition`` as lost; retry or fail them."""
    now = utcnow()
    running = (
        select(Job, Queue.settings)
        .join(Queue, Queue.id == Job.queue_id)
        # Every processing job holds a lease; saying so lets the partial
        # ``ix_jobs_lease`` serve a condition on another column too.
        .where(Job.status == JobStatus.PROCESSING, Job.lease_expires_at.is_not(None), condition)
        .limit(BATCH)
    )
    ended = 0
    with session_scope(database_url) as session:
        for job, settings in session.execute(running).all():
            outcome = end_attempt(
                session,
                job_id=job.id,
                attempt=job.attempt_count,
                max_attempts=job.max_attempts,
                settings=QueueSettings.from_stored(settings),
                error=error,
                now=now,
            )
            if outcome is not None:
                finish_attempt(session, job.id, job.attempt_count, AttemptStatus.LOST, now, error)
                ended += 1
    return ended


def sweep_expired_leases(database_url: str) -> int:
    """Record attempts of dead workers as lost; retry their jobs or fail them.

    Served by ``ix_jobs_lease`` (partial: leased jobs only).
    """
    swept = _end_lost_attempts(database_url, Job.lease_expires_at < utcnow(), LOST_ERROR)
    if swept:
        logger.warning("sweeper: %d attempt(s) of dead workers recorded as lost", swept)
    return swept


def hand_back_jobs(database_url: str, worker_name: str) -> int:
    """Retry (or fail, once attempts are spent) the jobs a stopped worker left unfinished.

    A worker calls this as it exits, after its pool has stopped: nothing it claimed
    still runs, so its jobs need not wait for their leases to run out.
    """
    handed = _end_lost_attempts(database_url, Job.worker_name == worker_name, SHUTDOWN_ERROR)
    if handed:
        logger.warning("%s stopped with %d job(s) unfinished: handed back", worker_name, handed)
    return handed
