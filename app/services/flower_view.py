"""Flower's read API over the live view, tenant-scoped, so scripts written for Flower keep working.

Shapes follow Flower 2.2's ``/api/workers``, ``/api/tasks``, ``/api/task/info/<id>``
and ``/api/queues/length``.  A Celery task here is one attempt of a job: task id
``<job id>:<attempt - 1>``, name = the job type, routing key = its Celery queue.
Each task is assembled from the monitor's recent task items (``live_view``), so
it is known while those are kept (the last ``RECENT_TASKS`` per organization).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.celery_names import job_queue_name, parse_task_id
from app.errors import NotFound, ValidationFailed
from app.services.actors import Actor, Permission
from app.services.live_state import LiveState, is_alive
from app.services.live_view import live_workers, recent_items, scope_of, visible_queues
from app.services.task_records import with_records

# TaskForge task state -> Celery state name, as Flower shows it.
CELERY_STATES = {
    "received": "RECEIVED",
    "started": "STARTED",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "retried": "RETRY",
    "revoked": "REVOKED",
    "rejected": "REJECTED",
}
SORT_KEYS = ("name", "state", "received", "started")

RECEIVED_FORMAT = "%Y-%m-%d %H:%M"


def celery_state(state: str) -> str:
    """Celery's name of a TaskForge task state (a state added later: upper-cased)."""
    return CELERY_STATES.get(state, state.upper())


def _epoch(item: dict[str, Any]) -> float:
    return datetime.fromisoformat(item["timestamp"]).timestamp()


def _args(payload: Any) -> tuple[str, str]:
    """Flower's ``args``/``kwargs`` strings: a ``{"args", "kwargs"}`` payload maps onto them."""
    if isinstance(payload, dict) and set(payload) <= {"args", "kwargs"} and payload:
        return json.dumps(payload.get("args", [])), json.dumps(payload.get("kwargs", {}))
    return json.dumps([payload] if payload is not None else []), "{}"


def _task(task_id: str, items: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any]:
    """One Flower task from its items (newest first) and the newest item's record."""
    task: dict[str, Any] = dict.fromkeys(CELERY_STATES)
    for item in reversed(items):
        if item["state"] in task:
            task[item["state"]] = _epoch(item)
    args, kwargs = _args(record.get("payload"))
    result = record.get("result")
    return {
        "uuid": task_id,
        "name": record["job_type"],
        "state": celery_state(record["state"]),
        "received": task.pop("received"),
        "started": task.pop("started"),
        "succeeded": task.pop("succeeded"),
        "failed": task.pop("failed"),
        "retried": task.pop("retried"),
        "revoked": task.pop("revoked"),
        "rejected": task.pop("rejected"),
        "sent": None,
        "eta": None,
        "expires": None,
        "clock": None,
        "client": None,
        "exchange": None,
        "routing_key": job_queue_name(record["queue_id"]),
        "args": args,
        "kwargs": kwargs,
        "result": repr(result) if result is not None else None,
        "exception": record.get("exception"),
        "traceback": record.get("traceback"),
        "retries": record.get("retries"),
        "runtime": next((i["runtime"] for i in items if i.get("runtime") is not None), None),
        "timestamp": _epoch(items[0]),
        "worker": next((i["worker"] for i in items if i.get("worker")), None),
        "job_id": record["job_id"],
        "attempt": record["attempt"],
        "queue_id": record["queue_id"],
        "organization_id": record.get("organization_id"),
    }


def _grouped(session: Session, actor: Actor, store: LiveState) -> dict[str, list[dict[str, Any]]]:
    """Task id → its items, newest first, tasks in order of their newest event."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in recent_items(session, actor, store):
        groups.setdefault(f"{item['job_id']}:{int(item['attempt']) - 1}", []).append(item)
    return groups


def _received_bound(value: str | None, field: str) -> float | None:
    if not value:  # Flower reads an empty bound as none
        return None
    try:
        return datetime.strptime(value, RECEIVED_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise ValidationFailed.field(field, "Use the format YYYY-MM-DD HH:MM (UTC).") from exc


def tasks(
    session: Session,
    *,
    actor: Actor,
    store: LiveState,
    limit: int | None = None,
    offset: int = 0,
    workername: str | None = None,
    taskname: str | None = None,
    state: str | None = None,
    received_start: str | None = None,
    received_end: str | None = None,
    sort_by: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Flower's ``GET /api/tasks``: task id → task, filtered, sorted and paged like Flower."""
    actor.require(Permission.JOB_READ)
    if limit is not None and limit < 1:
        raise ValidationFailed.field("limit", "Must be at least 1.")
    if offset < 0:
        raise ValidationFailed.field("offset", "Must be at least 0.")
    if sort_by is not None and sort_by.lstrip("-") not in SORT_KEYS:
        raise ValidationFailed.field("sort_by", f"Must be one of: {', '.join(SORT_KEYS)}.")
    wanted_state = None if state in (None, "All") else state
    if wanted_state is not None and wanted_state not in CELERY_STATES.values():
        raise ValidationFailed.field(
            "state", f"Must be one of: {', '.join(CELERY_STATES.values())}."
        )
    start = _received_bound(received_start, "received_start")
    end = _received_bound(received_end, "received_end")
    candidates = []
    for task_id, items in _grouped(session, actor, store).items():
        newest = items[0]
        if workername not in (None, "All") and not any(
            i.get("worker") == workername for i in items
        ):
            continue
        if taskname not in (None, "All") and newest["job_type"] != taskname:
            continue
        if wanted_state is not None and celery_state(newest["state"]) != wanted_state:
            continue
        received = next((_epoch(i) for i in items if i["state"] == "received"), None)
        if start is not None and (received is None or received < start):
            continue
        if end is not None and (received is None or received > end):
            continue
        candidates.append((task_id, items))
    if sort_by is not None:
        key = sort_by.lstrip("-")
        candidates.sort(key=lambda pair: _sort_value(pair[1], key), reverse=sort_by.startswith("-"))
    page = candidates[offset : offset + limit if limit is not None else None]
    records = with_records(
        session, [items[0] for _, items in page], organization_id=scope_of(actor)
    )
    return {
        task_id: _task(task_id, items, record)
        for (task_id, items), record in zip(page, records, strict=True)
    }


def _sort_value(items: list[dict[str, Any]], key: str) -> Any:
    if key == "name":
        return items[0]["job_type"]
    if key == "state":
        return celery_state(items[0]["state"])
    return next((_epoch(i) for i in items if i["state"] == key), 0.0)


def task_info(session: Session, *, actor: Actor, store: LiveState, task_id: str) -> dict[str, Any]:
    """Flower's ``GET /api/task/info/<id>``: one task, with ``task-id`` instead of ``uuid``."""
    actor.require(Permission.JOB_READ)
    if parse_task_id(task_id) is None:
        raise NotFound(f"Unknown task '{task_id}'")
    items = _grouped(session, actor, store).get(task_id)
    if not items:
        raise NotFound(f"Unknown task '{task_id}'")
    [record] = with_records(session, [items[0]], organization_id=scope_of(actor))
    info = _task(task_id, items, record)
    info["task-id"] = info.pop("uuid")
    return info


def workers(
    session: Session,
    *,
    actor: Actor,
    store: LiveState,
    workername: str | None = None,
    status: bool = False,
) -> dict[str, Any]:
    """Flower's ``GET /api/workers`` (or, with ``status``, nodename → alive), scoped."""
    views = {view["hostname"]: view for view in live_workers(session, actor=actor, store=store)}
    if workername is not None:
        if workername not in views:
            raise NotFound(f"Unknown worker '{workername}'")
        views = {workername: views[workername]}
    if status:
        return {host: view["status"] != "offline" for host, view in views.items()}
    states = store.worker_states()
    shown = {}
    for host, view in views.items():
        state = states.get(host, {})
        pool = json.loads(state["pool"]) if state.get("pool") else {}
        shown[host] = {
            "stats": {
                "pid": int(state["pid"]) if state.get("pid") else None,
                "pool": pool,
                "prefetch_count": view["prefetch_count"],
                "rusage": view["rusage"],
            },
            "active_queues": [{"name": name, "routing_key": name} for name in view["queues"]],
            "registered": view["registered_tasks"] or [],
            "conf": {},
            "timestamp": float(state["last_heartbeat"]) if state.get("last_heartbeat") else None,
            "alive": is_alive(state),
            "status": view["status"],
        }
    return shown


def queue_lengths(
    session: Session, *, actor: Actor, depth: Callable[[str], int | None]
) -> dict[str, Any]:
    """Flower's ``GET /api/queues/length``: each visible queue's broker depth."""
    actor.require(Permission.QUEUE_READ)
    return {
        "active_queues": [
            {
                "name": job_queue_name(row.id),
                "messages": depth(job_queue_name(row.id)) or 0,
                "queue": row.name,
                "queue_id": str(row.id),
            }
            for row in visible_queues(session, actor)
        ]
    }
