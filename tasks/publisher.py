"""The outbox's publisher on Celery: staged items become messages after each commit.

``app.runtime`` installs a :class:`CeleryPublisher` as ``app.services.outbox``'s
port in every process.  After a commit it sends each job's wake-up message on the
job's own Celery queue through one pooled producer, then the core stamps
``published_at`` (``outbox.mark_published``).  If Redis does not answer, the job
stays accepted with ``published_at`` NULL and the relay publishes it when the
broker is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from celery.utils.nodenames import worker_direct
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.celery_names import CONSUME_COMMAND, RUN_JOB, job_queue_name
from app.errors import Unavailable
from app.metrics import count_submitted
from app.models import utcnow
from app.services.outbox import (
    ConsumeQueue,
    Dispatch,
    DrainWorker,
    HandOff,
    Revoke,
    Staged,
    Submitted,
    mark_published,
    set_publisher,
)
from tasks.celery_app import app, use_broker
from tasks.remote_control import CeleryWorkerControl

logger = logging.getLogger(__name__)

# The hard limit leaves the soft limit's handler time to record the timeout.
HARD_LIMIT_GRACE_SECONDS = 30
BROKER_ERRORS = (KombuOperationalError, RedisError, ConnectionError, OSError, TimeoutError)
BROKER_UNAVAILABLE = "The broker is unavailable; try again shortly"


def celery_priority(priority: int) -> int:
    """Map TaskForge priority (9 most urgent) to a Redis priority step (0 first)."""
    return 9 - priority


def send(items: Sequence[Dispatch]) -> list[Dispatch]:
    """Publish due dispatches through one pooled producer; return those sent.

    A returned item keeps its ``eta`` only when the message carried it: such a
    message is held by the one worker that fetched it until it is due.
    """
    sent: list[Dispatch] = []
    now = utcnow()
    with app.producer_or_acquire() as producer:
        for item in items:
            if not item.due_for_publish:
                continue
            eta = item.eta if item.eta and item.eta > now else None
            _send_task(item, job_queue_name(item.queue_id), producer, eta=eta)
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


def revoke(task_ids: list[str], *, terminate: bool = False) -> None:
    """Revoke ``task_ids`` on every worker; ``terminate`` kills the pool processes running them."""
    if not task_ids:
        return
    if terminate:
        # SIGKILL: a handler may catch or ignore SIGTERM, and the job's row is
        # already cancelled, so nothing of the process is worth a clean exit.
        app.control.revoke(task_ids, terminate=True, signal="SIGKILL")
    else:
        app.control.revoke(task_ids)


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


class CeleryPublisher:
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
            revoke(
                [item.task_id for item in staged if isinstance(item, Revoke) and not item.terminate]
            )
            revoke(
                [item.task_id for item in staged if isinstance(item, Revoke) and item.terminate],
                terminate=True,
            )
            for item in staged:
                if isinstance(item, DrainWorker):
                    CeleryWorkerControl().drain(item.hostname)
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

    def send(self, items: Sequence[Dispatch]) -> list[Dispatch]:
        """Publish the due ``items`` now; return those sent; raise ``Unavailable`` when down."""
        try:
            return send(items)
        except BROKER_ERRORS as exc:
            raise Unavailable(BROKER_UNAVAILABLE) from exc


def install(database_url: str, broker_url: str) -> CeleryPublisher:
    """Make this process publish what its transactions stage, to ``broker_url``."""
    use_broker(broker_url)
    publisher = CeleryPublisher(database_url)
    set_publisher(publisher)
    return publisher
