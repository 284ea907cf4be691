"""Rows and actors for the service tests, made through the services themselves (no HTTP).

``register`` makes an organization, its owner and its ``default`` project;
``member`` adds a user with a role; ``actor_of`` is the ``Actor`` a user acts as.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.models import Job, Queue, Role, User, Worker, WorkerType
from app.services import auth, jobs, queues, workers
from app.services.actors import Actor
from app.services.auth import Registration
from app.services.outbox import Dispatch, Staged

PASSWORD = "correct horse battery"


def register(session: Session, name: str = "Acme") -> Registration:
    """A new organization with its owner and default project."""
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    return auth.register(session, email=email, password=PASSWORD, organization_name=name)


def member(session: Session, organization_id: uuid.UUID, role: Role) -> User:
    """A new user of the organization with ``role``."""
    email = f"{role.value}-{uuid.uuid4().hex[:10]}@example.com"
    return auth.create_user(
        session, organization_id=organization_id, email=email, password=PASSWORD, role=role
    )


def actor_of(user: User) -> Actor:
    """The actor ``user`` acts as now."""
    return Actor.for_user(user_id=user.id, organization_id=user.organization_id, role=user.role)


def queue(session: Session, actor: Actor, name: str = "work", **fields: Any) -> Queue:
    """A queue of the actor's organization; ``fields`` go to ``create_queue``."""
    return queues.create_queue(session, actor=actor, name=name, **fields)


def job(session: Session, actor: Actor, queue: Queue, job_type: str = "echo", **fields: Any) -> Job:
    """A job submitted to ``queue``."""
    return jobs.submit_job(session, actor=actor, queue_id=queue.id, job_type=job_type, **fields)


def runner(
    session: Session, hostname: str, celery_queue: str, job_types: list[str] | None
) -> Worker:
    """A live platform worker consuming ``celery_queue`` that advertised ``job_types``."""
    return workers.register_system_worker(
        session,
        hostname=hostname,
        organization_id=None,
        worker_type=WorkerType.GENERAL,
        capabilities=None,
        concurrency=1,
        queues=[celery_queue],
        job_types=job_types,
    )


class RecordingPublisher:
    """The outbox's port, recording what committed transactions staged instead of sending it."""

    def __init__(self) -> None:
        self.staged: list[Staged] = []
        self.sent: list[Dispatch] = []

    def __call__(self, staged: Sequence[Staged]) -> None:
        self.staged.extend(staged)

    def send(self, items: Sequence[Dispatch]) -> list[Dispatch]:
        due = [item for item in items if item.due_for_publish]
        self.sent.extend(due)
        return due

    def of_type(self, kind: type[Any]) -> list[Any]:
        """The staged items of one kind, in order."""
        return [item for item in self.staged if isinstance(item, kind)]
