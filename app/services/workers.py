"""Workers: registration, heartbeats, listing and draining.

Two paths share this module.  Tenants (REST and gRPC) act through an ``Actor``
and see only their organization's workers.  Celery workers started with
``taskforge worker`` register and heartbeat on their own behalf through the
``*_system`` functions (``tasks/lifecycle.py``): no actor, matched by Celery
nodename, organization taken from the worker's own configuration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.celery_names import job_queue_name
from app.db import rowcount
from app.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from app.models import Project, Queue, Worker, WorkerStatus, WorkerType, utcnow
from app.services.actors import Actor, Permission
from app.services.outbox import DrainWorker, stage
from app.services.pagination import Page, paginate
from app.services.queue_settings import QueueSettings
from app.services.validation import (
    check_json_document,
    check_name,
    check_range,
    check_text,
    parse_uuid,
    parse_uuid_field,
)

# Every worker runs these (tasks/handlers.py); no advertisement is needed for them.
BUILTIN_JOB_TYPES = frozenset({"echo", "sleep", "fail", "flaky"})
# A worker silent for this many heartbeat intervals is offline.
MISSED_HEARTBEATS = 3
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
    interval: timedelta,
    metadata: dict[str, str] | None = None,
) -> Heartbeat:
    """Record that a worker is alive, with its latest metadata; a draining one stays draining.

    ``interval`` is the configured heartbeat interval (``Runtime.heartbeat_interval``):
    both edges answer with the same next heartbeat time.
    """
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


def drain_worker(session: Session, *, actor: Actor, worker_id: str | uuid.UUID) -> Worker:
    """Stop a worker taking new jobs; it finishes the running ones, then goes offline."""
    actor.require(Permission.WORKER_WRITE)
    return _drain(session, _load(session, actor, worker_id))


def drain_by_hostname(session: Session, *, actor: Actor, hostname: str) -> Worker:
    """Drain a self-registered Celery worker by nodename (an operator's: also shared ones)."""
    return _drain(session, get_controllable_worker(session, actor=actor, hostname=hostname))


def _drain(session: Session, worker: Worker) -> Worker:
    if worker.status is WorkerStatus.OFFLINE:
        raise Conflict("The worker is offline; there is nothing to drain")
    worker.drain_mode = True
    worker.status = WorkerStatus.DRAINING
    session.flush()
    if worker.hostname:
        stage(session, DrainWorker(worker.hostname))
    return worker


def require_worker_control(actor: Actor) -> None:
    """Allow remote control of workers to ``org:admin`` or ``worker:write`` holders only."""
    if not (actor.can(Permission.ORG_ADMIN) or actor.can(Permission.WORKER_WRITE)):
        raise PermissionDenied(f"This action needs the '{Permission.WORKER_WRITE}' permission")


def get_controllable_worker(session: Session, *, actor: Actor, hostname: str) -> Worker:
    """Return the actor's self-registered worker with Celery nodename ``hostname``.

    Other organizations' workers are not found; shared platform workers are found
    by platform operators only.
    """
    require_worker_control(actor)
    check_text(hostname, "hostname")
    owner = Worker.organization_id == actor.organization_id
    if actor.operator:
        owner = or_(owner, Worker.organization_id.is_(None))
    worker = session.scalar(
        select(Worker)
        .where(Worker.hostname == hostname, owner)
        .order_by(Worker.registered_at.desc())
        .limit(1)
    )
    if worker is None:
        raise NotFound("Worker not found")
    return worker


def register_system_worker(
    session: Session,
    *,
    hostname: str,
    organization_id: uuid.UUID | None,
    worker_type: WorkerType,
    capabilities: Any,
    concurrency: int,
    queues: list[str],
    job_types: list[str] | None = None,
) -> Worker:
    """Record a starting Celery worker on its own behalf, by nodename; it starts online.

    ``job_types`` are the types it has handlers for.  A restart is a new life:
    an earlier drain of the same nodename is forgotten.
    """
    worker = session.scalar(
        select(Worker).where(Worker.hostname == hostname).order_by(Worker.registered_at.desc())
    )
    if worker is None:
        worker = Worker(hostname=hostname)
        session.add(worker)
    now = utcnow()
    worker.organization_id = organization_id
    worker.name = check_name(hostname[:100])
    worker.worker_type = worker_type
    worker.capabilities = check_json_document(
        capabilities, "capabilities", max_bytes=CAPABILITIES_MAX_BYTES
    )
    worker.max_concurrent_jobs = min(max(concurrency, 1), MAX_CONCURRENT_JOBS)
    worker.queues = list(queues)
    worker.job_types = sorted(job_types) if job_types is not None else None
    worker.status = WorkerStatus.ONLINE
    worker.drain_mode = False
    worker.heartbeat_metadata = {}
    worker.last_heartbeat = now
    worker.registered_at = now
    session.flush()
    return worker


@dataclass(frozen=True)
class Health:
    """What a worker's heartbeat thread reports about itself."""

    active_jobs: int
    queues: list[str]
    problems: list[str]


def record_system_heartbeat(
    session: Session, *, worker_id: uuid.UUID, health: Health
) -> Worker | None:
    """Record a self-registered worker's heartbeat; None when its row is gone.

    Status follows the report: ``draining`` once drained, ``unhealthy`` while it
    reports problems, else ``online``.  A worker whose drain completed stays offline.
    """
    worker = session.get(Worker, worker_id)
    if worker is None:
        return None
    if worker.drain_mode and worker.status is WorkerStatus.OFFLINE:
        return worker
    worker.last_heartbeat = utcnow()
    worker.queues = list(health.queues)
    worker.heartbeat_metadata = {
        "active_jobs": health.active_jobs,
        "problems": list(health.problems),
    }
    if worker.drain_mode:
        worker.status = WorkerStatus.DRAINING
    elif health.problems:
        worker.status = WorkerStatus.UNHEALTHY
    else:
        worker.status = WorkerStatus.ONLINE
    session.flush()
    return worker


def mark_system_worker_offline(session: Session, *, worker_id: uuid.UUID) -> None:
    """Record that a self-registered worker stopped (shutdown, or its drain completed)."""
    worker = session.get(Worker, worker_id)
    if worker is not None:
        worker.status = WorkerStatus.OFFLINE
        worker.heartbeat_metadata = {**worker.heartbeat_metadata, "active_jobs": 0}
        session.flush()


def mark_silent_workers_offline(session: Session, *, interval: timedelta) -> int:
    """Mark offline every worker silent for ``MISSED_HEARTBEATS`` intervals; return how many."""
    cutoff = utcnow() - interval * MISSED_HEARTBEATS
    return rowcount(
        session,
        update(Worker)
        .where(
            Worker.status != WorkerStatus.OFFLINE,
            or_(Worker.last_heartbeat.is_(None), Worker.last_heartbeat < cutoff),
        )
        .values(status=WorkerStatus.OFFLINE),
    )


@dataclass(frozen=True)
class Runner:
    """A live self-registered worker consuming a queue, and the job types it advertised."""

    hostname: str
    job_types: frozenset[str] | None

    def runs(self, job_type: str) -> bool:
        """Tell whether this worker advertised a handler for ``job_type``."""
        return job_type in BUILTIN_JOB_TYPES or job_type in (self.job_types or ())


def live_runners(session: Session, *, celery_queue: str) -> list[Runner]:
    """The live, undrained self-registered workers that consume ``celery_queue``.

    Reads every live worker row (a small table) and filters the JSON queue lists
    here, which no index could serve on both SQLite and PostgreSQL.
    """
    rows = session.execute(
        select(Worker.hostname, Worker.queues, Worker.job_types).where(
            Worker.hostname.is_not(None),
            Worker.status.in_([WorkerStatus.ONLINE, WorkerStatus.UNHEALTHY]),
            Worker.drain_mode.is_(False),
        )
    ).all()
    return [
        Runner(
            hostname=str(row.hostname),
            job_types=frozenset(row.job_types) if row.job_types is not None else None,
        )
        for row in rows
        if celery_queue in (row.queues or [])
    ]


def check_runnable(runners: list[Runner], job_type: str) -> None:
    """Refuse ``job_type`` when the queue's live workers all advertised types without it.

    Without live workers, or with one that advertised nothing, TaskForge cannot
    know, and the job is accepted.
    """
    if job_type in BUILTIN_JOB_TYPES or not runners:
        return
    if any(runner.job_types is None or runner.runs(job_type) for runner in runners):
        return
    known = sorted(BUILTIN_JOB_TYPES.union(*(runner.job_types or () for runner in runners)))
    raise ValidationFailed.field(
        "job_type",
        f"No live worker of this queue has a handler for '{job_type}'; "
        f"its workers run: {', '.join(known)}.",
    )


@dataclass(frozen=True)
class WorkerScope:
    """Whose queues a Celery worker may consume.

    ``organization_id`` None is a platform worker (every organization's queues); a
    queue whose ``worker_type`` setting names a type is consumed only by workers of it.
    Paused queues are consumed too: the claim drops their messages.
    """

    organization_id: uuid.UUID | None
    worker_type: WorkerType

    def accepts(self, organization_id: uuid.UUID, required_type: str | None) -> bool:
        """Tell whether a queue of ``organization_id`` needing ``required_type`` is ours."""
        if self.organization_id is not None and organization_id != self.organization_id:
            return False
        return not required_type or required_type == self.worker_type.value


def queues_in_scope(session: Session, scope: WorkerScope) -> list[str]:
    """Celery queue names of every TaskForge queue within ``scope``, oldest first."""
    query = select(Queue.id, Queue.organization_id, Queue.settings).order_by(Queue.created_at)
    if scope.organization_id is not None:
        query = query.where(Queue.organization_id == scope.organization_id)
    return [
        job_queue_name(row.id)
        for row in session.execute(query).all()
        if scope.accepts(row.organization_id, QueueSettings.from_stored(row.settings).worker_type)
    ]
