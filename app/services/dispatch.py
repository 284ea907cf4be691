"""Publish-after-commit: how a job's messages reach the broker.

Services never talk to Celery.  They *stage* items on the session; once that
session's transaction commits, the publisher installed by the process
(``tasks.dispatch.install``) sends them and stamps the jobs' ``published_at``.
A rolled-back transaction sends nothing.  A crash between commit and publish
leaves ``published_at`` NULL, and the relay in ``tasks.maintenance`` publishes
those rows later, so no accepted job is orphaned.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.models import Job, Queue

_STAGED_KEY = "taskforge.dispatch"


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
    def for_job(cls, job: Job, settings: dict[str, Any]) -> Dispatch:
        """Describe the next message for ``job`` as it stands now."""
        return cls(
            job_id=job.id,
            queue_id=job.queue_id,
            attempt=job.attempt_count,
            priority=job.priority,
            timeout_seconds=int(settings["timeout_seconds"]),
            eta=job.available_at,
            generation=job.dispatch_generation,
            job_type=job.job_type,
        )

    @property
    def task_id(self) -> str:
        """The Celery task id: one per job attempt, so a revoke hits exactly it."""
        return task_id(self.job_id, self.attempt)


def task_id(job_id: uuid.UUID, attempt: int) -> str:
    """Name the Celery task that wakes ``job_id`` for attempt ``attempt + 1``."""
    return f"{job_id}:{attempt}"


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
            worker_type=(queue.settings or {}).get("worker_type"),
        )


@dataclass(frozen=True)
class HandOff:
    """Send a job's message to one worker's own queue: it has the handler the sender lacks."""

    dispatch: Dispatch
    hostname: str
    hops: int


@dataclass(frozen=True)
class Revoke:
    """Tell workers to discard a message they may hold (best effort; SQL decides)."""

    task_id: str


@dataclass(frozen=True)
class Submitted:
    """Count one accepted job (Prometheus) once its transaction has committed."""

    queue_id: uuid.UUID


@dataclass(frozen=True)
class DrainWorker:
    """Tell one Celery worker to stop consuming and finish what it runs."""

    hostname: str


Staged = Dispatch | HandOff | ConsumeQueue | Revoke | Submitted | DrainWorker
Publisher = Callable[[Sequence[Staged]], None]
_publisher: Publisher | None = None


def set_publisher(publisher: Publisher | None) -> None:
    """Install the function that sends staged items after each commit."""
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
