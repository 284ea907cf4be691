"""The flower-style live view of one organization's cluster, read from the monitor's Redis.

Live state (workers, task events, throughput, oldest waiting job) is what the
monitor process wrote; SQL is read only for the organization's queue ids and
names, which scope everything else.  Every call is scoped to the actor's
organization, whatever its role, except for a platform operator (``Actor.operator``,
created from the CLI), who sees every organization and controls the shared workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.celery_names import job_queue_name
from app.errors import ValidationFailed
from app.models import Organization, Queue
from app.services.actors import Actor, Permission
from app.services.live_state import (
    RECENT_TASKS,
    TASK_STATES,
    LiveState,
    is_alive,
    minute_of,
    worker_queues,
    worker_view,
)
from app.services.task_records import task_types, with_records
from app.services.validation import check_datetime, check_range, parse_uuid_field
from app.services.workers import get_controllable_worker, require_worker_control

TASK_LIMIT_DEFAULT = 100
TASK_LIMIT_MAX = 500
POOL_ACTIONS = ("grow", "shrink", "restart")
POOL_STEP_MAX = 16


class WorkerControl(Protocol):
    """Sends a pool command to one Celery worker and returns its reply (None if silent)."""

    def pool(self, hostname: str, action: str, n: int) -> dict[str, Any] | None: ...


def scope_of(actor: Actor) -> uuid.UUID | None:
    """The organization the actor's monitor reads are limited to; None for an operator."""
    return None if actor.operator else actor.organization_id


def visible_queues(session: Session, actor: Actor) -> list[Any]:
    query = select(Queue.id, Queue.name, Queue.is_active, Queue.organization_id)
    org = scope_of(actor)
    if org is not None:
        query = query.where(Queue.organization_id == org)
    return list(session.execute(query.order_by(Queue.name, Queue.id)).all())


def queue_names(session: Session, actor: Actor) -> dict[str, str]:
    """Queue id → name of the queues the actor may see."""
    return {str(row.id): row.name for row in visible_queues(session, actor)}


def _organizations(session: Session, actor: Actor) -> list[str]:
    org = scope_of(actor)
    if org is not None:
        return [str(org)]
    return [str(org_id) for org_id in session.scalars(select(Organization.id))]


def live_workers(
    session: Session, *, actor: Actor, store: LiveState, now: float | None = None
) -> list[dict[str, Any]]:
    """Workers registered to the organization or consuming its queues, with live state.

    An operator sees every worker the monitor knows, in full.
    """
    actor.require(Permission.WORKER_READ)
    states = store.worker_states()
    registry = store.registry()
    if actor.operator:
        return [
            view
            for host, state in states.items()
            if (
                view := worker_view(
                    state,
                    registry.get(host),
                    org=None,
                    org_queues=(),
                    counts=store.host_counts(host),
                    now=now,
                )
            )
            is not None
        ]
    org = str(actor.organization_id)
    org_queues = {job_queue_name(row.id) for row in visible_queues(session, actor)}
    relevant = [
        host
        for host, state in states.items()
        if (registry.get(host) or {}).get("organization_id") == org
        or org_queues.intersection(worker_queues(state, registry.get(host)))
    ]
    counts = store.org_counts(org, relevant)
    views = []
    for host in relevant:
        view = worker_view(
            states[host],
            registry.get(host),
            org=org,
            org_queues=org_queues,
            counts=counts[host],
            now=now,
        )
        if view is not None:
            views.append(view)
    return views


def recent_tasks(
    session: Session,
    *,
    actor: Actor,
    store: LiveState,
    queue_id: str | uuid.UUID | None = None,
    job_id: str | uuid.UUID | None = None,
    state: str | None = None,
    job_type: str | None = None,
    worker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = TASK_LIMIT_DEFAULT,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The organization's recent task records, newest first, optionally filtered.

    Each item carries the job's payload, result, attempts, exception and traceback
    (``app.services.task_records``: redacted and size-capped).  An operator reads
    every organization's items (each names its ``organization_id``).
    """
    actor.require(Permission.JOB_READ)
    check_range(limit, "limit", 1, TASK_LIMIT_MAX)
    check_range(offset, "offset", 0, RECENT_TASKS)
    if state is not None and state not in TASK_STATES:
        raise ValidationFailed.field("state", f"Must be one of: {', '.join(TASK_STATES)}.")
    if since is not None:
        since = check_datetime(since, "since")
    if until is not None:
        until = check_datetime(until, "until")
    wanted_queue = str(parse_uuid_field(queue_id, "queue_id")) if queue_id is not None else None
    wanted_job = str(parse_uuid_field(job_id, "job_id")) if job_id is not None else None
    found: list[dict[str, Any]] = []
    skipped = 0
    for item in recent_items(session, actor, store):
        if wanted_queue is not None and item.get("queue_id") != wanted_queue:
            continue
        if wanted_job is not None and item.get("job_id") != wanted_job:
            continue
        if state is not None and item.get("state") != state:
            continue
        if job_type is not None and item.get("job_type") != job_type:
            continue
        if worker is not None and item.get("worker") != worker:
            continue
        at = datetime.fromisoformat(item["timestamp"])
        if (since is not None and at < since) or (until is not None and at > until):
            continue
        if skipped < offset:
            skipped += 1
            continue
        found.append(item)
        if len(found) >= limit:
            break
    return with_records(session, found, organization_id=scope_of(actor))


def recent_items(session: Session, actor: Actor, store: LiveState) -> list[dict[str, Any]]:
    """Recent task items of every organization the actor may see, newest first."""
    orgs = _organizations(session, actor)
    if len(orgs) == 1:
        return [{**item, "organization_id": orgs[0]} for item in store.recent_tasks(orgs[0])]
    merged = [{**item, "organization_id": org} for org in orgs for item in store.recent_tasks(org)]
    merged.sort(key=lambda item: item["timestamp"], reverse=True)
    return merged


def task_type_overview(session: Session, *, actor: Actor, store: LiveState) -> list[dict[str, Any]]:
    """Per job type and queue: recent task events by state and runtime p50/p95."""
    actor.require(Permission.JOB_READ)
    return task_types(recent_items(session, actor, store), queue_names(session, actor))


def queue_overview(
    session: Session,
    *,
    actor: Actor,
    store: LiveState,
    depth: Callable[[str], int | None],
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Each of the organization's queues with depth, consumers, throughput and oldest wait."""
    actor.require(Permission.QUEUE_READ)
    now = now or time.time()
    rows = visible_queues(session, actor)
    ids = [str(row.id) for row in rows]
    throughput = store.throughput(ids, minute_of(now) - 1)
    oldest = store.oldest()
    registry = store.registry()
    consumers: dict[str, int] = {}
    for host, state in store.worker_states().items():
        if is_alive(state, now):
            for name in worker_queues(state, registry.get(host)):
                consumers[name] = consumers.get(name, 0) + 1
    overview = []
    for row, queue_id in zip(rows, ids, strict=True):
        name = job_queue_name(row.id)
        waiting_since = oldest.get(queue_id)
        overview.append(
            {
                "queue_id": queue_id,
                "organization_id": str(row.organization_id),
                "name": row.name,
                "is_active": row.is_active,
                "depth": depth(name),
                "consumers": consumers.get(name, 0),
                "throughput_per_minute": throughput.get(queue_id, 0),
                "oldest_waiting_seconds": max(now - waiting_since, 0.0)
                if waiting_since is not None
                else None,
            }
        )
    return overview


def control_pool(
    session: Session,
    *,
    actor: Actor,
    hostname: str,
    action: str,
    n: int = 1,
    control: WorkerControl,
) -> dict[str, Any]:
    """Grow, shrink or restart the pool of one of the organization's own workers."""
    require_worker_control(actor)
    if action not in POOL_ACTIONS:
        raise ValidationFailed.field("action", f"Must be one of: {', '.join(POOL_ACTIONS)}.")
    check_range(n, "n", 1, POOL_STEP_MAX)
    worker = get_controllable_worker(session, actor=actor, hostname=hostname)
    assert worker.hostname is not None
    reply = control.pool(worker.hostname, action, n)
    return {"hostname": worker.hostname, "action": action, "n": n, "reply": reply}
