"""Workers: registration, heartbeats and listing, scoped to the actor's organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Project, Worker, WorkerStatus, WorkerType, utcnow
from app.services.actors import Actor, Permission
from app.services.pagination import Page, paginate
from app.services.validation import (
    check_json_document,
    check_name,
    check_range,
    parse_uuid,
    parse_uuid_field,
)

HEARTBEAT_INTERVAL = timedelta(seconds=10)
MAX_CONCURRENT_JOBS = 1024
CAPABILITIES_MAX_BYTES = 64 * 1024
METADATA_MAX_BYTES = 16 * 1024


def _load(session: Session, actor: Actor, worker_id: str | uuid.UUID) -> Worker:
    worker = session.get(Worker, parse_uuid(worker_id, what="Worker"))
    if worker is None or worker.organization_id != actor.organization_id:
        raise NotFound("Worker not found")
    return worker


def _project_id(
    session: Session, actor: Actor, project_id: str | uuid.UUID | None
) -> uuid.UUID | None:
    if project_id is None:
        return None
    project = session.get(Project, parse_uuid_field(project_id, "project_id"))
    if project is None or project.organization_id != actor.organization_id:
        raise NotFound("Project not found")
    return project.id


def get_worker(session: Session, *, actor: Actor, worker_id: str | uuid.UUID) -> Worker:
    """Return one of the actor's workers."""
    actor.require(Permission.WORKER_READ)
    return _load(session, actor, worker_id)


def list_workers(
    session: Session,
    *,
    actor: Actor,
    page: int,
    limit: int,
    worker_type: WorkerType | None = None,
    status: WorkerStatus | None = None,
    project_id: str | uuid.UUID | None = None,
) -> Page[Worker]:
    """List the organization's workers by name, optionally filtered."""
    actor.require(Permission.WORKER_READ)
    query = select(Worker).where(Worker.organization_id == actor.organization_id)
    if worker_type is not None:
        query = query.where(Worker.worker_type == worker_type)
    if status is not None:
        query = query.where(Worker.status == status)
    if project_id is not None:
        query = query.where(Worker.project_id == parse_uuid_field(project_id, "project_id"))
    return paginate(session, query.order_by(Worker.name, Worker.id), page=page, limit=limit)


def register_worker(
    session: Session,
    *,
    actor: Actor,
    name: str,
    worker_type: WorkerType = WorkerType.GENERAL,
    capabilities: Any = None,
    max_concurrent_jobs: int = 1,
    project_id: str | uuid.UUID | None = None,
) -> Worker:
    """Register a worker of the actor's organization; it starts online."""
    actor.require(Permission.WORKER_WRITE)
    now = utcnow()
    worker = Worker(
        organization_id=actor.organization_id,
        project_id=_project_id(session, actor, project_id),
        name=check_name(name),
        worker_type=worker_type,
        status=WorkerStatus.ONLINE,
        capabilities=check_json_document(
            capabilities, "capabilities", max_bytes=CAPABILITIES_MAX_BYTES
        ),
        max_concurrent_jobs=check_range(
            max_concurrent_jobs, "max_concurrent_jobs", 1, MAX_CONCURRENT_JOBS
        ),
        queues=[],
        drain_mode=False,
        heartbeat_metadata={},
        last_heartbeat=now,
        registered_at=now,
    )
    session.add(worker)
    session.flush()
    return worker


@dataclass(frozen=True)
class Heartbeat:
    """A recorded heartbeat and when the worker should send the next one."""

    worker: Worker
    next_heartbeat_at: datetime


def heartbeat(
    session: Session,
    *,
    actor: Actor,
    worker_id: str | uuid.UUID,
    metadata: dict[str, str] | None = None,
    interval: timedelta = HEARTBEAT_INTERVAL,
) -> Heartbeat:
    """Record that a worker is alive, with its latest metadata; a draining one stays draining."""
    actor.require(Permission.WORKER_WRITE)
    worker = _load(session, actor, worker_id)
    now = utcnow()
    worker.heartbeat_metadata = dict(
        check_json_document(metadata or {}, "metadata", max_bytes=METADATA_MAX_BYTES)
    )
    worker.last_heartbeat = now
    worker.status = WorkerStatus.DRAINING if worker.drain_mode else WorkerStatus.ONLINE
    session.flush()
    return Heartbeat(worker=worker, next_heartbeat_at=now + interval)
