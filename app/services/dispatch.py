"""Publish-after-commit: how a job's wake-up message reaches the broker.

Services never talk to Celery.  They *stage* a :class:`Dispatch` on the session;
once that session's transaction commits, the publisher installed by the
process (``tasks.dispatch.install``) sends the messages and stamps the jobs'
``published_at``.  A rolled-back transaction publishes nothing.  A crash between
commit and publish leaves ``published_at`` NULL, and the relay in
``tasks.maintenance`` publishes those rows later, so no accepted job is orphaned.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.models import Job

_STAGED_KEY = "taskforge.dispatch"


@dataclass(frozen=True)
class Dispatch:
    """One wake-up message: run ``job_id`` as attempt ``attempt + 1``."""

    job_id: uuid.UUID
    queue_id: uuid.UUID
    attempt: int
    priority: int
    eta: datetime | None = None

    @classmethod
    def for_job(cls, job: Job, *, eta: datetime | None = None) -> Dispatch:
        """Describe the next message for ``job`` as it stands now."""
        return cls(
            job_id=job.id,
            queue_id=job.queue_id,
            attempt=job.attempt_count,
            priority=job.priority,
            eta=eta,
        )


@dataclass(frozen=True)
class ConsumeQueue:
    """Ask running workers to start consuming a newly created queue."""

    celery_queue: str


Staged = Dispatch | ConsumeQueue
Publisher = Callable[[Sequence[Staged]], None]
_publisher: Publisher | None = None


def set_publisher(publisher: Publisher | None) -> None:
    """Install the function that sends staged dispatches after each commit."""
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
