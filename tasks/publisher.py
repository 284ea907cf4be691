"""The outbox's publisher on Celery: staged items become messages after each commit.

``app.runtime`` installs a :class:`CeleryPublisher` as ``app.services.outbox``'s
port in every process.  After a commit it sends each job's wake-up message on the
job's own Celery queue in one pipelined write, and a background thread stamps
``published_at`` a moment later for every request of the process together
(``PublishedStamps``, ``outbox.mark_published``).  If Redis does not answer, the job
stays accepted with ``published_at`` NULL and the relay publishes it when the
broker is back.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from celery.utils.nodenames import worker_direct
from kombu import Queue
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.celery_names import CONSUME_COMMAND, RUN_JOB, job_queue_name, priority_step
from app.errors import Unavailable
from app.forksafe import FORK_GATE
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
BROKER_ERRORS = (
    KombuOperationalError,
    BatchPublishError,
    RedisError,
    ConnectionError,
    OSError,
    TimeoutError,
)
# How long sent dispatches wait to be stamped together (well below outbox.RELAY_GRACE).
# Each stamp is a write transaction that competes with the submits' own for SQLite's
# one write lock: at 50 ms the stamper cost a REST submit 0.3 ms of its own CPU and
# slowed the request threads' commits; at 1 s it is one small UPDATE per process and
# second (measured per thread under wrk, docs/performance.md).
STAMP_WINDOW_SECONDS = 1.0
# Redis commands buffered before a pipelined write goes out (a batch's messages).
PIPELINE_MAX = 2000
BROKER_UNAVAILABLE = "The broker is unavailable; try again shortly"


def send(items: Sequence[Dispatch]) -> list[Dispatch]:
    """Publish due dispatches in one pipelined write on one pooled connection; return those sent.

    kombu's ``Producer.batch`` buffers the messages' Redis commands and sends
    them in one round trip when the block ends (``BatchPublishError`` when the
    outcome is uncertain: nothing is returned as sent, so the relay publishes
    them again and the claim drops any duplicate).  A returned item keeps its
    ``eta`` only when the message carried it: such a message is held by the one
    worker that fetched it until it is due.
    """
    sent: list[Dispatch] = []
    now = utcnow()
    with app.producer_or_acquire() as producer, producer.batch(max_size=PIPELINE_MAX):
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
    args = [str(item.job_id), item.attempt]
    app.send_task(
        RUN_JOB,
        args=args,
        kwargs=kwargs,
        # The same text Celery's generic ``saferepr`` would make of these plain
        # values, at a fraction of its cost per message.
        argsrepr=repr(args),
        kwargsrepr=repr(kwargs),
        task_id=item.task_id,
        queue=queue,
        priority=priority_step(item.priority),
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


class PublishedStamps:
    """Stamp submitted jobs' ``published_at`` off the request path: one UPDATE per window.

    A submit's transaction commits the job and its message leaves right after;
    the stamp is bookkeeping for the relay, which only looks at jobs unstamped
    for ``outbox.RELAY_GRACE`` (seconds).  So the sent dispatches of every
    request are collected here and a background thread stamps them together
    ``window`` seconds later (``outbox.mark_published``: one statement per 500).
    A process that dies first leaves its jobs unstamped and the relay publishes
    them again; the claim's compare-and-set drops the second message.
    """

    def __init__(self, database_url: str, *, window: float = STAMP_WINDOW_SECONDS) -> None:
        self.database_url = database_url
        self.window = window
        self._pending: list[Dispatch] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._owner_pid = 0

    def add(self, items: Sequence[Dispatch]) -> None:
        """Stamp ``items`` within ``window`` seconds."""
        with self._lock:
            self._pending.extend(items)
            # Started in the process that publishes (a forked server worker has
            # no copy of its parent's threads).
            if self._owner_pid != os.getpid():
                self._owner_pid = os.getpid()
                threading.Thread(target=self._run, name="published-stamps", daemon=True).start()
        self._wake.set()

    def flush(self) -> None:
        """Stamp what is pending now."""
        with self._lock:
            items, self._pending = self._pending, []
        if not items:
            return
        try:
            mark_published(self.database_url, items)
        except SQLAlchemyError:
            logger.warning(
                "could not stamp published_at on %d job(s); the relay will re-publish",
                len(items),
                exc_info=True,
            )

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.window)
            self._wake.clear()
            with FORK_GATE.section():  # a fork must not copy its lock or a SQL checkout
                self.flush()


_STAMPS: dict[str, PublishedStamps] = {}
_STAMPS_LOCK = threading.Lock()


def _stamps_for(database_url: str) -> PublishedStamps:
    """The process's one stamper for ``database_url`` (every publisher of it shares the thread)."""
    with _STAMPS_LOCK:
        if database_url not in _STAMPS:
            _STAMPS[database_url] = PublishedStamps(database_url)
        return _STAMPS[database_url]


def flush_stamps() -> None:
    """Write every stamp this process still holds (at exit, and for tests that read them)."""
    with _STAMPS_LOCK:
        stampers = list(_STAMPS.values())
    for stamps in stampers:
        stamps.flush()


class CeleryPublisher:
    """Send what a committed transaction staged; never raise into the caller."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.stamps = _stamps_for(database_url)

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
                if sent and any(isinstance(item, Submitted) for item in staged):
                    # A submit: its caller waits for the answer, the stamp can wait.
                    self.stamps.add(sent)
                elif sent:
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


atexit.register(flush_stamps)


def install(
    database_url: str, broker_url: str, sentinel_master: str | None = None
) -> CeleryPublisher:
    """Make this process publish what its transactions stage, to ``broker_url``."""
    use_broker(broker_url, sentinel_master)
    publisher = CeleryPublisher(database_url)
    set_publisher(publisher)
    return publisher
