"""The publisher behind ``app.services.dispatch``: staged items → Celery.

Installed once per process with :func:`install`.  After a commit it sends each
job's wake-up message on the job's own Celery queue through one pooled
producer, then stamps ``published_at``.  If Redis does not answer, the job
stays accepted with ``published_at`` NULL and the relay (``tasks.maintenance``)
publishes it when the broker is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from celery.utils.nodenames import worker_direct
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import tuple_, update
from sqlalchemy.exc import SQLAlchemyError

from app.db import get_engine
from app.metrics import count_submitted
from app.models import Job, celery_queue_name, utcnow
from app.services import dispatch
from app.services.dispatch import (
    ConsumeQueue,
    Dispatch,
    DrainWorker,
    HandOff,
    Revoke,
    Staged,
    Submitted,
)
from tasks.celery_app import app, use_broker
from tasks.control import drain

logger = logging.getLogger(__name__)

RUN_JOB = "taskforge.run_job"
CONSUME_COMMAND = "taskforge_consume"
# Jobs due further out than this wait in SQL; the relay publishes them when due,
# so no long ETA sits unacknowledged in a worker or outlives the visibility timeout.
ETA_HORIZON = timedelta(seconds=60)
# The hard limit leaves the soft limit's handler time to record the timeout.
HARD_LIMIT_GRACE_SECONDS = 30
# One UPDATE stamps this many jobs (a batch submit, a relay round).
MARK_CHUNK = 500
BROKER_ERRORS = (KombuOperationalError, RedisError, ConnectionError, OSError, TimeoutError)


def celery_priority(priority: int) -> int:
    """Map TaskForge priority (9 most urgent) to a Redis priority step (0 first)."""
    return 9 - priority


def due_for_publish(item: Dispatch) -> bool:
    """Tell whether ``item`` may go to the broker now (no ETA beyond the horizon)."""
    return item.eta is None or item.eta - utcnow() <= ETA_HORIZON


def send(items: Sequence[Dispatch]) -> list[Dispatch]:
    """Publish due dispatches through one pooled producer; return those sent.

    A returned item keeps its ``eta`` only when the message carried it: such a
    message is held by the one worker that fetched it until it is due.
    """
    sent: list[Dispatch] = []
    now = utcnow()
    with app.producer_or_acquire() as producer:
        for item in items:
            if not due_for_publish(item):
                continue
            eta = item.eta if item.eta and item.eta > now else None
            _send_task(item, celery_queue_name(item.queue_id), producer, eta=eta)
            sent.append(item if eta == item.eta else replace(item, eta=None))
    return sent


def hand_off(items: Sequence[HandOff]) -> None:
    """Send each job's message to the worker-direct queue of the worker named for it."""
    with app.producer_or_acquire() as producer:
        for item in items:
            _send_task(item.dispatch, worker_direct(item.hostname), producer, hops=item.hops)


def _send_task(
    item: Dispatch, queue: str | Queue, producer: Any, *, eta: datetime | None = None, hops: int = 0
) -> None:
    kwargs: dict[str, Any] = {}
    if item.job_type is not None:
        kwargs["job_type"] = item.job_type
    if hops:
        kwargs["hops"] = hops
    app.send_task(
        RUN_JOB,
        args=[str(item.job_id), item.attempt],
        kwargs=kwargs,
        task_id=item.task_id,
        queue=queue,
        priority=celery_priority(item.priority),
        eta=eta,
        soft_time_limit=item.timeout_seconds,
        time_limit=item.timeout_seconds + HARD_LIMIT_GRACE_SECONDS,
        producer=producer,
    )


def mark_published(database_url: str, items: Sequence[Dispatch]) -> None:
    """Stamp ``published_at`` on the jobs whose message went out, for that dispatch only.

    A job whose attempt or dispatch generation moved on since (a worker marked
    it unpublished because its queue was paused, a retry) keeps its newer state.
    A message sent with an ETA is held by one worker: ``held_since`` becomes the
    job's due time, so ``republish_held_messages`` can take over if that worker
    dies; any other message waits in the shared queue (``held_since`` NULL).
    """
    now = utcnow()
    held = [item for item in items if item.eta is not None]
    queued = [item for item in items if item.eta is None]
    with get_engine(database_url).begin() as connection:
        for group, held_since in ((queued, None), (held, Job.available_at)):
            for start in range(0, len(group), MARK_CHUNK):
                chunk = group[start : start + MARK_CHUNK]
                connection.execute(
                    update(Job)
                    .where(
                        tuple_(Job.id, Job.attempt_count, Job.dispatch_generation).in_(
                            [(item.job_id, item.attempt, item.generation) for item in chunk]
                        )
                    )
                    # Publishing is bookkeeping, not a change a client sees.
                    .values(published_at=now, held_since=held_since, updated_at=Job.updated_at)
                )


def broadcast_consume(items: Sequence[ConsumeQueue]) -> None:
    """Tell running workers about new queues; each decides whether it may consume them."""
    for item in items:
        app.control.broadcast(
            CONSUME_COMMAND,
            arguments={
                "queue": item.celery_queue,
                "organization_id": str(item.organization_id),
                "worker_type": item.worker_type or "",
            },
            reply=False,
        )


class Publisher:
    """Send what a committed transaction staged; never raise into the caller."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def __call__(self, staged: Sequence[Staged]) -> None:
        count_submitted(item.queue_id for item in staged if isinstance(item, Submitted))
        jobs = [item for item in staged if isinstance(item, Dispatch)]
        try:
            consumers = [item for item in staged if isinstance(item, ConsumeQueue)]
            if consumers:
                broadcast_consume(consumers)
            revokes = [item.task_id for item in staged if isinstance(item, Revoke)]
            if revokes:
                app.control.revoke(revokes)
            for item in staged:
                if isinstance(item, DrainWorker):
                    drain(item.hostname)
            hand_offs = [item for item in staged if isinstance(item, HandOff)]
            if hand_offs:
                hand_off(hand_offs)
            if jobs:
                sent = send(jobs)
                if sent:
                    mark_published(self.database_url, sent)
        except BROKER_ERRORS:
            logger.warning("broker unavailable; %d job(s) left for the relay", len(jobs))
        except SQLAlchemyError:
            logger.warning("could not stamp published_at; the relay will re-publish", exc_info=True)


def install(database_url: str, broker_url: str) -> None:
    """Make this process publish staged items after each commit."""
    use_broker(broker_url)
    dispatch.set_publisher(Publisher(database_url))
