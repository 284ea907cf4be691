"""Queues: CRUD, pause/resume and statistics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, ValidationFailed
from app.models import ACTIVE_STATUSES, Job, JobStatus, Project, Queue, utcnow
from app.services import audit
from app.services.actors import Actor, Permission
from app.services.auth import DEFAULT_PROJECT_NAME
from app.services.job_counts import count_jobs
from app.services.outbox import ConsumeQueue, Dispatch, stage
from app.services.pagination import Page, paginate
from app.services.queue_settings import QueueSettings
from app.services.validation import (
    UNSET,
    check_description,
    check_name,
    check_range,
    check_text,
    parse_uuid,
    parse_uuid_field,
)


def _load(session: Session, actor: Actor, queue_id: str | uuid.UUID) -> Queue:
    queue = session.get(Queue, parse_uuid(queue_id, what="Queue"))
    if queue is None or queue.organization_id != actor.organization_id:
        raise NotFound("Queue not found")
    return queue


def get_queue(session: Session, *, actor: Actor, queue_id: str | uuid.UUID) -> Queue:
    """Return one of the actor's queues."""
    actor.require(Permission.QUEUE_READ)
    return _load(session, actor, queue_id)


def get_queue_by_name(session: Session, *, actor: Actor, name: str) -> Queue:
    """Return the actor's queue called ``name``."""
    actor.require(Permission.QUEUE_READ)
    check_text(name, "queue_name")
    queue = session.scalar(
        select(Queue).where(Queue.organization_id == actor.organization_id, Queue.name == name)
    )
    if queue is None:
        raise NotFound(f"Queue '{name}' not found")
    return queue


def list_queues(
    session: Session,
    *,
    actor: Actor,
    page: int,
    limit: int,
    project_id: str | uuid.UUID | None = None,
) -> Page[Queue]:
    """List the organization's queues by name, optionally of one project."""
    actor.require(Permission.QUEUE_READ)
    query = select(Queue).where(Queue.organization_id == actor.organization_id)
    if project_id is not None:
        query = query.where(Queue.project_id == parse_uuid_field(project_id, "project_id"))
    return paginate(session, query.order_by(Queue.name, Queue.id), page=page, limit=limit)


def _resolve_project(session: Session, actor: Actor, project_id: str | uuid.UUID | None) -> Project:
    if project_id is None:
        project = session.scalar(
            select(Project).where(
                Project.organization_id == actor.organization_id,
                Project.name == DEFAULT_PROJECT_NAME,
            )
        )
        if project is None:
            raise ValidationFailed.field("project_id", "Required: there is no default project.")
        return project
    project = session.get(Project, parse_uuid_field(project_id, "project_id"))
    if project is None or project.organization_id != actor.organization_id:
        raise NotFound("Project not found")
    return project


def _check_unique_name(
    session: Session, actor: Actor, name: str, exclude: uuid.UUID | None
) -> None:
    query = select(Queue.id).where(
        Queue.organization_id == actor.organization_id, Queue.name == name
    )
    if exclude is not None:
        query = query.where(Queue.id != exclude)
    if session.scalar(query) is not None:
        raise Conflict(f"A queue named '{name}' already exists")


def create_queue(
    session: Session,
    *,
    actor: Actor,
    name: str,
    description: str | None = None,
    priority: int = 0,
    settings: dict[str, Any] | None = None,
    project_id: str | uuid.UUID | None = None,
) -> Queue:
    """Create a queue; without ``project_id`` it joins the ``default`` project."""
    actor.require(Permission.QUEUE_WRITE)
    name = check_name(name)
    project = _resolve_project(session, actor, project_id)
    _check_unique_name(session, actor, name, None)
    queue = Queue(
        organization_id=actor.organization_id,
        project_id=project.id,
        name=name,
        description=check_description(description),
        priority=check_range(priority, "priority", 0, 9),
        settings=QueueSettings.check(settings),
        is_active=True,
    )
    session.add(queue)
    session.flush()
    stage(session, ConsumeQueue.for_queue(queue))
    return queue


def update_queue(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    name: str | None = None,
    description: str | None = UNSET,
    priority: int | None = None,
    settings: dict[str, Any] | None = None,
    is_active: bool | None = None,
) -> Queue:
    """Change the given fields of a queue; omitted ones keep their value."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.QUEUE_WRITE)
    if name is not None:
        name = check_name(name)
        _check_unique_name(session, actor, name, queue.id)
        queue.name = name
    if description is not UNSET:
        queue.description = check_description(description)
    if priority is not None:
        queue.priority = check_range(priority, "priority", 0, 9)
    if settings is not None:
        queue.settings = QueueSettings.check(settings)
    if is_active is not None:
        _set_active(session, queue, is_active)
    session.flush()
    return queue


def delete_queue(session: Session, *, actor: Actor, queue_id: str | uuid.UUID) -> None:
    """Delete a queue and its finished jobs; one with active jobs is a conflict."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.QUEUE_WRITE)
    active = exists().where(Job.queue_id == queue.id, Job.status.in_(ACTIVE_STATUSES))
    if session.scalar(select(active)):
        raise Conflict("The queue has pending, scheduled or running jobs; cancel them first")
    session.delete(queue)
    session.flush()


def _set_active(session: Session, queue: Queue, active: bool) -> None:
    was_active = queue.is_active
    queue.is_active = active
    if active and not was_active:
        # Jobs submitted during the pause, and those whose messages a worker
        # dropped, are unpublished; wake up the due ones now (the relay takes
        # the rest when they come due).
        settings = QueueSettings.from_stored(queue.settings)
        for job in session.scalars(
            select(Job).where(
                Job.queue_id == queue.id,
                Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                Job.published_at.is_(None),
            )
        ):
            stage(session, Dispatch.for_job(job, settings))


def pause_queue(session: Session, *, actor: Actor, queue_id: str | uuid.UUID) -> Queue:
    """Stop starting the queue's jobs; submissions are still accepted."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.QUEUE_WRITE)
    was_active = queue.is_active
    _set_active(session, queue, False)
    session.flush()
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=audit.AuditAction.QUEUE_PAUSE,
        target_type="queue",
        target_id=queue.id,
        details={"changed": was_active},
    )
    return queue


def resume_queue(session: Session, *, actor: Actor, queue_id: str | uuid.UUID) -> Queue:
    """Start the queue's jobs again."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.QUEUE_WRITE)
    was_active = queue.is_active
    _set_active(session, queue, True)
    session.flush()
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=audit.AuditAction.QUEUE_RESUME,
        target_type="queue",
        target_id=queue.id,
        details={"changed": not was_active},
    )
    return queue


@dataclass(frozen=True)
class QueueStats:
    """Counts per state and activity of one queue."""

    queue_id: uuid.UUID
    counts: dict[JobStatus, int]
    is_active: bool
    last_activity: datetime | None
    oldest_pending_at: datetime | None
    broker_depth: int | None

    @property
    def oldest_pending_age_seconds(self) -> float | None:
        """How long the oldest pending job has waited."""
        if self.oldest_pending_at is None:
            return None
        return (utcnow() - self.oldest_pending_at).total_seconds()


def queue_stats(
    session: Session,
    *,
    actor: Actor,
    queue_id: str | uuid.UUID,
    broker_depth: Callable[[str], int | None] | None = None,
) -> QueueStats:
    """Count the queue's jobs per state (the summary counters) and read its activity."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    counts = count_jobs(session, queue.organization_id, queue_id=queue.id)
    last_activity = session.scalar(select(func.max(Job.updated_at)).where(Job.queue_id == queue.id))
    oldest_pending = session.scalar(
        select(func.min(Job.created_at)).where(
            Job.queue_id == queue.id, Job.status == JobStatus.PENDING
        )
    )
    return QueueStats(
        queue_id=queue.id,
        counts=counts,
        is_active=queue.is_active,
        last_activity=last_activity,
        oldest_pending_at=oldest_pending,
        broker_depth=broker_depth(queue.celery_queue) if broker_depth else None,
    )
