"""The outbox: how a job's messages reach the broker, after commit and again when lost.

Services never talk to Celery.  They *stage* items on the session; once that
session's transaction commits, the :class:`Publisher` the process installed (the
composition root installs ``tasks.publisher.CeleryPublisher``) sends them and
:func:`mark_published` stamps the jobs.  A rolled-back transaction sends nothing.

SQL stays the record: a job whose message did not leave (a crash between commit
and publish, a broker outage, a paused queue, a far-future schedule) keeps
``published_at`` NULL and :func:`relay_unpublished` publishes it later; a held
message whose worker died (:func:`republish_held_messages`) and a message the broker
lost (:func:`republish_lost_messages`) are published again.  The three share one
query (:func:`_waiting`), each with its own condition and index.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    case,
    event,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.broker import Head
from app.celery_names import job_queue_name, task_id
from app.db import get_engine, session_scope
from app.errors import Unavailable
from app.models import Job, JobStatus, Queue, utcnow
from app.services.queue_settings import QueueSettings

logger = logging.getLogger(__name__)

_STAGED_KEY = "taskforge.outbox"
# Jobs due further out than this wait in SQL; the relay publishes them when due,
# so no long ETA sits unacknowledged in a worker or outlives the visibility timeout.
ETA_HORIZON = timedelta(seconds=60)
# One UPDATE stamps this many jobs (a batch submit, a relay round).
MARK_CHUNK = 500
# One relay, republish or sweep round reads at most this many jobs.
BATCH = 500
# A job committed less than this long ago may still be mid-publish by the API.
RELAY_GRACE = timedelta(seconds=5)
# A job published this long ago and still pending, on a queue the broker holds no
# message for, lost its message (Redis restarted without persistence, a FLUSHALL).
LOST_MESSAGE_AFTER = timedelta(minutes=5)
# A pending job overtaken this long ago by a later message of its queue and priority
# lost its message (a Redis failover, a worker that died between fetch and claim).
OVERTAKEN_AFTER = timedelta(seconds=30)
WAITING = (JobStatus.PENDING, JobStatus.SCHEDULED)


@dataclass(frozen=True)
class Dispatch:
    """One wake-up message: run ``job_id`` as attempt ``attempt + 1``."""

    job_id: uuid.UUID
    queue_id: uuid.UUID
    attempt: int
    priority: int
    timeout_seconds: int
    eta: datetime | None = None
    generation: int = 0
    # Travels in the message, so a worker without this type's handler passes the
    # job on before claiming it.
    job_type: str | None = None

    @classmethod
    def for_job(cls, job: Job, settings: QueueSettings) -> Dispatch:
        """Describe the next message for ``job`` as it stands now."""
        return cls(
            job_id=job.id,
            queue_id=job.queue_id,
            attempt=job.attempt_count,
            priority=job.priority,
            timeout_seconds=settings.timeout_seconds,
            eta=job.available_at,
            generation=job.dispatch_generation,
            job_type=job.job_type,
        )

    @property
    def task_id(self) -> str:
        """The Celery task id: one per job attempt, so a revoke hits exactly it."""
        return task_id(self.job_id, self.attempt)

    @property
    def due_for_publish(self) -> bool:
        """Tell whether the message may go to the broker now (no ETA beyond the horizon)."""
        return self.eta is None or self.eta - utcnow() <= ETA_HORIZON


@dataclass(frozen=True)
class ConsumeQueue:
    """Ask the running workers entitled to a new queue to consume it."""

    celery_queue: str
    organization_id: uuid.UUID
    worker_type: str | None

    @classmethod
    def for_queue(cls, queue: Queue) -> ConsumeQueue:
        """Describe who should consume ``queue``."""
        return cls(
            celery_queue=queue.celery_queue,
            organization_id=queue.organization_id,
            worker_type=QueueSettings.from_stored(queue.settings).worker_type,
        )


@dataclass(frozen=True)
class HandOff:
    """Send a job's message to one worker's own queue: it has the handler the sender lacks."""

    dispatch: Dispatch
    hostname: str
    hops: int


@dataclass(frozen=True)
class Revoke:
    """Tell workers to discard a message they may hold (best effort; SQL decides).

    With ``terminate`` the worker running the task also kills its pool process.
    """

    task_id: str
    terminate: bool = False


@dataclass(frozen=True)
class Submitted:
    """Count one accepted job (Prometheus) once its transaction has committed."""

    queue_id: uuid.UUID


@dataclass(frozen=True)
class DrainWorker:
    """Tell one Celery worker to stop consuming and finish what it runs."""

    hostname: str


Staged = Dispatch | HandOff | ConsumeQueue | Revoke | Submitted | DrainWorker


class Publisher(Protocol):
    """The broker side of the outbox (``tasks.publisher.CeleryPublisher``)."""

    def __call__(self, staged: Sequence[Staged]) -> None:
        """Send what a committed transaction staged; never raise into the caller."""

    def send(self, items: Sequence[Dispatch]) -> list[Dispatch]:
        """Publish the due ``items`` now; return those sent; raise ``Unavailable`` when down.

        A returned item keeps its ``eta`` only when its message carried one.
        """


_publisher: Publisher | None = None


def set_publisher(publisher: Publisher | None) -> None:
    """Install the publisher that sends staged items after each commit."""
    global _publisher
    _publisher = publisher


def stage(session: Session, item: Staged) -> None:
    """Send ``item`` once the session's transaction commits."""
    session.info.setdefault(_STAGED_KEY, []).append(item)


@event.listens_for(Session, "after_commit")
def _publish_staged(session: Session) -> None:
    staged: list[Staged] = session.info.pop(_STAGED_KEY, [])
    if staged and _publisher is not None:
        _publisher(staged)


@event.listens_for(Session, "after_soft_rollback")
def _drop_staged(session: Session, _previous_transaction: object) -> None:
    session.info.pop(_STAGED_KEY, None)


_JOBS: Table = Job.__table__  # type: ignore[assignment]
# PostgreSQL: the sent dispatches as array parameters, unnested by the server.
# A row-value IN list of 500 dispatches is 1,500 parameters, and psycopg parses
# such a statement's text again on every execution (it caches only statements
# of at most 50 parameters); this one has 5 and takes queued and held messages
# together.
_SENT = (
    func.unnest(
        bindparam("job_id", type_=postgresql.ARRAY(_JOBS.c.id.type)),
        bindparam("attempt", type_=postgresql.ARRAY(_JOBS.c.attempt_count.type)),
        bindparam("generation", type_=postgresql.ARRAY(_JOBS.c.dispatch_generation.type)),
        bindparam("eta", type_=postgresql.ARRAY(_JOBS.c.available_at.type)),
    )
    .table_valued("job_id", "attempt", "generation", "eta")
    .render_derived(name="sent")
)
_MARK_POSTGRESQL = (
    update(_JOBS)
    .where(
        _JOBS.c.id == _SENT.c.job_id,
        _JOBS.c.attempt_count == _SENT.c.attempt,
        _JOBS.c.dispatch_generation == _SENT.c.generation,
    )
    # Publishing is bookkeeping, not a change a client sees.
    .values(
        published_at=bindparam("now", type_=_JOBS.c.published_at.type),
        held_since=case(
            (_SENT.c.eta.is_(None), None),
            else_=func.coalesce(_JOBS.c.available_at, _SENT.c.eta),
        ),
        updated_at=_JOBS.c.updated_at,
    )
)


def mark_published(database_url: str, items: Sequence[Dispatch]) -> None:
    """Stamp ``published_at`` on the jobs whose message went out, for that dispatch only.

    A job whose attempt or dispatch generation moved on since (a worker marked
    it unpublished because its queue was paused, a retry) keeps its newer state.
    A message sent with an ETA is held by one worker: ``held_since`` becomes the
    message's due time (the job's own ``available_at``, or the ETA a policy gave a
    held-back job), so ``republish_held_messages`` can take over if that worker
    dies; any other message waits in the shared queue (``held_since`` NULL).
    """
    now = utcnow()
    with get_engine(database_url).begin() as connection:
        if connection.dialect.name == "postgresql":
            for start in range(0, len(items), MARK_CHUNK):
                chunk = items[start : start + MARK_CHUNK]
                connection.execute(
                    _MARK_POSTGRESQL,
                    {
                        "now": now,
                        "job_id": [item.job_id for item in chunk],
                        "attempt": [item.attempt for item in chunk],
                        "generation": [item.generation for item in chunk],
                        "eta": [item.eta for item in chunk],
                    },
                )
            return
        held = [item for item in items if item.eta is not None]
        queued = [item for item in items if item.eta is None]
        for group, holds in ((queued, False), (held, True)):
            for start in range(0, len(group), MARK_CHUNK):
                chunk = group[start : start + MARK_CHUNK]
                held_since: Any = None
                if holds:
                    held_since = func.coalesce(
                        Job.available_at,
                        case({item.job_id: item.eta for item in chunk}, value=Job.id),
                    )
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


def publish_now(database_url: str, items: Sequence[Dispatch]) -> int:
    """Send ``items`` and stamp them published; a broker outage leaves them for later."""
    if not items or _publisher is None:
        return 0
    try:
        sent = _publisher.send(items)
    except Unavailable:
        logger.warning("broker unavailable; %d job(s) wait for the next round", len(items))
        return 0
    mark_published(database_url, sent)
    return len(sent)


def _waiting_jobs(
    database_url: str,
    *conditions: ColumnElement[bool],
    order_by: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
) -> list[tuple[Job, Dispatch]]:
    """Each waiting job of an active queue that matches ``conditions``, with its next message."""
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job, Queue.settings)
            .join(Queue, Queue.id == Job.queue_id)
            .where(*conditions, Queue.is_active.is_(True))
            .order_by(*order_by)
            .limit(BATCH)
        ).all()
        session.expunge_all()
        return [
            (job, Dispatch.for_job(job, QueueSettings.from_stored(settings)))
            for job, settings in rows
        ]


def _waiting(
    database_url: str,
    *conditions: ColumnElement[bool],
    order_by: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
) -> list[Dispatch]:
    """The next message of each waiting job of an active queue that matches ``conditions``."""
    return [item for _job, item in _waiting_jobs(database_url, *conditions, order_by=order_by)]


def relay_unpublished(database_url: str, *, grace: timedelta = RELAY_GRACE) -> int:
    """Publish jobs whose message never left (crash, broker outage, far-future time).

    Served by ``ix_jobs_unpublished`` (partial: unpublished jobs only).
    """
    now = utcnow()
    items = _waiting(
        database_url,
        Job.status.in_(WAITING),
        Job.published_at.is_(None),
        Job.updated_at <= now - grace,
        or_(Job.available_at.is_(None), Job.available_at <= now + ETA_HORIZON),
        order_by=(Job.priority.desc(), Job.created_at),
    )
    return publish_now(database_url, items)


def republish_held_messages(database_url: str, *, after: timedelta) -> int:
    """Publish again, to its shared queue, each job whose held message went unclaimed.

    A message sent with an ETA (a scheduled job, a retry's backoff) or handed to
    one worker's own queue sits with that worker, unacknowledged: if the worker
    dies, Redis gives it back only after the visibility timeout (an hour).  A
    job still waiting ``after`` (one lease) past ``held_since`` gets a plain
    message in its shared queue, once: the stamp clears ``held_since``, and the
    claim drops whichever copy comes second.  Served by ``ix_jobs_held`` (held jobs only).
    """
    items = _waiting(
        database_url,
        Job.status.in_(WAITING),
        Job.held_since < utcnow() - after,
        Job.published_at.is_not(None),
        order_by=(Job.held_since,),
    )
    # Due by now: they go out without an ETA, into the shared queue.
    sent = publish_now(database_url, items)
    if sent:
        logger.warning("held messages: %d job(s) unclaimed a lease after due; published", sent)
    return sent


def republish_lost_messages(
    database_url: str,
    depth: Callable[[str], int | None],
    *,
    head: Callable[[str, int], Head | None] | None = None,
    older_than: timedelta = LOST_MESSAGE_AFTER,
    overtaken_after: timedelta = OVERTAKEN_AFTER,
) -> int:
    """Publish again the pending jobs whose message the broker no longer holds.

    Either sign is enough:

    - *Overtaken* (when ``head`` can show the oldest message waiting at a priority
      of a queue): a job published over ``overtaken_after`` ago and not held by a
      worker, while the oldest message at its queue and priority belongs to a job
      published after it, or none waits there.  Redis hands out one priority's
      messages in order, so the job's own message left the list, yet no worker
      claimed the job: a failover lost the message, or the worker that fetched it
      died before claiming (Redis would give it back only after the visibility
      timeout, an hour).
    - *Forgotten*: a job published over ``older_than`` ago on a queue that holds no
      message at all (Redis restarted without persistence, a FLUSHALL).

    A duplicate of a message that still exists somewhere is dropped by the claim.
    Oldest publication first, served by ``ix_jobs_pending_published`` (partial:
    pending jobs only; the status is written into the statement, so that SQLite
    sees the index's condition in the query).
    """
    now = utcnow()
    first = now - (min(older_than, overtaken_after) if head else older_than)
    candidates = _waiting_jobs(
        database_url,
        Job.status == literal(JobStatus.PENDING, Job.status.type, literal_execute=True),
        Job.published_at < first,
        or_(Job.available_at.is_(None), Job.available_at <= first),
        order_by=(Job.published_at,),
    )
    overtaken = (
        _overtaken_in(database_url, head, [job for job, _ in candidates], now - overtaken_after)
        if head
        else set()
    )
    empty: dict[uuid.UUID, bool] = {}

    def forgotten(job: Job) -> bool:
        cutoff = now - older_than
        if job.published_at is None or job.published_at >= cutoff:
            return False
        if job.available_at is not None and job.available_at > cutoff:
            return False
        if job.queue_id not in empty:
            empty[job.queue_id] = depth(job_queue_name(job.queue_id)) == 0
        return empty[job.queue_id]

    lost = [item for job, item in candidates if job.id in overtaken or forgotten(job)]
    sent = publish_now(database_url, lost)
    if sent:
        logger.warning("republish: %d job(s) had lost their message", sent)
    return sent


def _overtaken_in(
    database_url: str,
    head: Callable[[str, int], Head | None],
    jobs: Sequence[Job],
    cutoff: datetime,
) -> set[uuid.UUID]:
    with session_scope(database_url) as session:
        return overtaken(session, head, jobs, cutoff)


def overtaken(
    session: Session,
    head: Callable[[str, int], Head | None],
    jobs: Sequence[Job],
    cutoff: datetime,
) -> set[uuid.UUID]:
    """The ids of ``jobs``, published and not held, whose message a later one overtook.

    Only jobs published (and due) before ``cutoff`` count.  ``head`` tells which
    job's message waits first at a queue and priority on the broker.
    """
    eligible = [
        job
        for job in jobs
        if job.held_since is None
        and job.published_at is not None
        and job.published_at < cutoff
        and (job.available_at is None or job.available_at < cutoff)
    ]
    heads = {
        (job.queue_id, job.priority): head(job_queue_name(job.queue_id), job.priority)
        for job in eligible
    }
    leading = {h.job_id for h in heads.values() if h is not None and h.job_id is not None}
    published: dict[uuid.UUID, datetime | None] = {}
    if leading:
        published = dict(
            session.execute(select(Job.id, Job.published_at).where(Job.id.in_(leading))).all()
        )
    found: set[uuid.UUID] = set()
    for job in eligible:
        first = heads[(job.queue_id, job.priority)]
        if first is None:
            continue  # the broker did not say
        if first.job_id is None:
            found.add(job.id)  # nothing waits at its priority
            continue
        own, later = job.published_at, published.get(first.job_id)
        if first.job_id != job.id and own is not None and later is not None and own < later:
            found.add(job.id)
    return found
