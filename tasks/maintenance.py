"""Periodic tasks driven by Celery beat: the relay, the lease sweeper, the offline sweeper."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select

from app.broker import BrokerProbe
from app.config import load_settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobStatus, Queue, celery_queue_name, utcnow
from app.services import workers as worker_service
from app.services.dispatch import Dispatch
from app.services.queues import with_defaults
from tasks.celery_app import app
from tasks.dispatch import BROKER_ERRORS, ETA_HORIZON, mark_published, send
from tasks.executor import end_attempt, finish_attempt

logger = logging.getLogger(__name__)

BATCH = 500
# A job committed less than this long ago may still be mid-publish by the API.
RELAY_GRACE = timedelta(seconds=5)
LOST_ERROR = "The worker running this attempt stopped responding (its lease expired)"
SHUTDOWN_ERROR = "The worker running this attempt shut down before it finished"


def _publish(database_url: str, items: list[Dispatch]) -> int:
    """Send ``items`` and stamp them published; a broker outage leaves them for later."""
    if not items:
        return 0
    try:
        sent = send(items)
    except BROKER_ERRORS:
        logger.warning("broker unavailable; %d job(s) wait for the next round", len(items))
        return 0
    mark_published(database_url, sent)
    return len(sent)


def relay_unpublished(database_url: str, *, grace: timedelta = RELAY_GRACE) -> int:
    """Publish jobs whose message never left (crash, broker outage, far-future time).

    Served by ``ix_jobs_status_published``.
    """
    now = utcnow()
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(
                Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                Job.published_at.is_(None),
                Job.updated_at <= now - grace,
                or_(Job.available_at.is_(None), Job.available_at <= now + ETA_HORIZON),
                Queue.is_active.is_(True),
            )
            .order_by(Job.priority.desc(), Job.created_at)
            .limit(BATCH)
        ).all()
        items = [Dispatch.for_job(job, with_defaults(settings)) for job, settings in rows]
    return _publish(database_url, items)


def _end_lost_attempts(database_url: str, condition: ColumnElement[bool], error: str) -> int:
    """Record the running attempts of jobs matching ``condition`` as lost; retry or fail them."""
    now = utcnow()
    running = (
        select(Job, Queue.settings)
        .join(Queue, Queue.id == Job.queue_id)
        .where(Job.status == JobStatus.PROCESSING, condition)
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
                settings=with_defaults(settings),
                error=error,
                now=now,
            )
            if outcome is not None:
                finish_attempt(session, job.id, job.attempt_count, AttemptStatus.LOST, now, error)
                ended += 1
    return ended


def sweep_expired_leases(database_url: str) -> int:
    """Record attempts of dead workers as lost; retry their jobs or fail them.

    Served by ``ix_jobs_status_lease``.
    """
    swept = _end_lost_attempts(database_url, Job.lease_expires_at < utcnow(), LOST_ERROR)
    if swept:
        logger.warning("sweeper: %d attempt(s) of dead workers recorded as lost", swept)
    return swept


def republish_held_messages(database_url: str, *, after: timedelta) -> int:
    """Publish again, to its shared queue, each job whose held message went unclaimed.

    A message sent with an ETA (a scheduled job, a retry's backoff) or handed to
    one worker's own queue sits with that worker, unacknowledged: if the worker
    dies, Redis gives it back only after the visibility timeout (an hour).  A
    job still waiting ``after`` (one lease) past ``held_since`` gets a plain
    message in its shared queue, once: the stamp clears ``held_since``, and the
    claim drops whichever copy comes second.  Served by ``ix_jobs_status_held``.
    """
    cutoff = utcnow() - after
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(
                Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                Job.held_since < cutoff,
                Job.published_at.is_not(None),
                Queue.is_active.is_(True),
            )
            .order_by(Job.held_since)
            .limit(BATCH)
        ).all()
        # Due by now: they go out without an ETA, into the shared queue.
        items = [Dispatch.for_job(job, with_defaults(settings)) for job, settings in rows]
    sent = _publish(database_url, items)
    if sent:
        logger.warning("held messages: %d job(s) unclaimed a lease after due; published", sent)
    return sent


def hand_back_jobs(database_url: str, worker_name: str) -> int:
    """Retry (or fail, once attempts are spent) the jobs a stopped worker left unfinished.

    A worker calls this as it exits, after its pool has stopped: nothing it claimed
    still runs, so its jobs need not wait for their leases to run out.
    """
    handed = _end_lost_attempts(database_url, Job.worker_name == worker_name, SHUTDOWN_ERROR)
    if handed:
        logger.warning("%s stopped with %d job(s) unfinished: handed back", worker_name, handed)
    return handed


# A job published this long ago and still pending, on a queue Redis holds no
# message for, lost its message (Redis restarted without persistence, a FLUSHALL).
LOST_MESSAGE_AFTER = timedelta(minutes=5)


def republish_lost_messages(
    database_url: str,
    depth: Callable[[str], int | None],
    *,
    older_than: timedelta = LOST_MESSAGE_AFTER,
) -> int:
    """Publish again the due pending jobs whose queue is empty on the broker.

    Only queues with no waiting message are considered, so a long backlog is
    never duplicated; a duplicate of a message a worker still holds is dropped
    by the claim.  Served by ``ix_jobs_status_published``.
    """
    now = utcnow()
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(
                Job.status == JobStatus.PENDING,
                Job.published_at < now - older_than,
                or_(Job.available_at.is_(None), Job.available_at <= now - older_than),
                Queue.is_active.is_(True),
            )
            .order_by(Job.priority.desc(), Job.created_at)
            .limit(BATCH)
        ).all()
        empty: dict[uuid.UUID, bool] = {}
        items = []
        for job, settings in rows:
            if job.queue_id not in empty:
                empty[job.queue_id] = depth(celery_queue_name(job.queue_id)) == 0
            if empty[job.queue_id]:
                items.append(Dispatch.for_job(job, with_defaults(settings)))
    sent = _publish(database_url, items)
    if sent:
        logger.warning("republish: %d job(s) had lost their message", sent)
    return sent


@app.task(name="taskforge.relay", ignore_result=True)
def relay() -> int:
    """Publish unpublished due jobs; runs every few seconds from beat."""
    return relay_unpublished(load_settings().database_url)


@app.task(name="taskforge.republish_lost", ignore_result=True)
def republish_lost() -> int:
    """Re-publish jobs whose message the broker lost; runs every minute from beat."""
    settings = load_settings()
    return republish_lost_messages(
        settings.database_url, BrokerProbe.from_url(settings.redis_url).depth
    )


@app.task(name="taskforge.sweep", ignore_result=True)
def sweep() -> int:
    """Take over the jobs of dead workers, running or held; runs every few seconds from beat."""
    settings = load_settings()
    swept = sweep_expired_leases(settings.database_url)
    return swept + republish_held_messages(
        settings.database_url, after=timedelta(seconds=settings.lease_seconds)
    )


def mark_silent_workers_offline(database_url: str, *, heartbeat_seconds: float) -> int:
    """Mark offline the workers that missed three heartbeats in a row; return how many."""
    with session_scope(database_url) as session:
        marked = worker_service.mark_silent_workers_offline(
            session, interval=timedelta(seconds=heartbeat_seconds)
        )
    if marked:
        logger.warning("offline sweeper: %d silent worker(s) marked offline", marked)
    return marked


@app.task(name="taskforge.workers_offline", ignore_result=True)
def workers_offline() -> int:
    """Mark silent workers offline; runs every heartbeat interval from beat."""
    settings = load_settings()
    return mark_silent_workers_offline(
        settings.database_url, heartbeat_seconds=settings.heartbeat_seconds
    )
