"""The remote-control commands a TaskForge worker answers, and how it keeps its queues.

A worker's scope comes from its environment (``scope_from_env``):

- ``TASKFORGE_WORKER_ORGANIZATION``: an organization id; the worker consumes only
  that organization's queues.  Unset: a platform worker consuming every queue.
- ``TASKFORGE_WORKER_TYPE``: ``general`` (default), ``specialized_cpu``,
  ``specialized_io`` or ``specialized_gpu``.  A queue whose ``worker_type``
  setting names a type is consumed only by workers of that type.

A worker started without ``-Q`` converges on the queues of its scope
(``app.services.workers.queues_in_scope``): it reads them from SQL at start
(``tasks.worker``), adds a new queue when the ``taskforge_consume`` broadcast
arrives, and ``sync_consumers`` (run on every heartbeat) adds the queues whose
broadcast it missed (Redis down, or sent before the worker listened) and cancels
those deleted or moved out of its scope.  A worker given ``-Q`` consumes exactly
what the operator chose.

A drained worker (``taskforge_drain``) cancels every consumer and ignores later
broadcasts and syncs for the rest of its life.  The sending side of these
commands is ``tasks.publisher`` and ``tasks.remote_control``.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from celery.worker.control import control_command

from app.celery_names import CONSUME_COMMAND, DRAIN_COMMAND, JOB_QUEUE_PREFIX
from app.db import session_scope
from app.models import WorkerType
from app.services.workers import WorkerScope, queues_in_scope

# Set once this process is drained; it never consumes again until restarted.
DRAINING = threading.Event()
# Set at start when no -Q was given: TaskForge then chooses the queues.
AUTOMATIC = threading.Event()


def scope_from_env() -> WorkerScope:
    """This worker's scope, from ``TASKFORGE_WORKER_ORGANIZATION`` / ``_TYPE``."""
    org = os.environ.get("TASKFORGE_WORKER_ORGANIZATION") or None
    kind = os.environ.get("TASKFORGE_WORKER_TYPE") or WorkerType.GENERAL.value
    return WorkerScope(
        organization_id=uuid.UUID(org) if org else None, worker_type=WorkerType(kind)
    )


@control_command(
    name=CONSUME_COMMAND,
    args=[("queue", str), ("organization_id", str), ("worker_type", str)],
    signature="<queue> <organization_id> <worker_type>",
)
def taskforge_consume(
    state: Any, queue: str, organization_id: str, worker_type: str = "", **_: Any
) -> dict[str, str]:
    """Consume a newly created TaskForge queue if it is within this worker's scope."""
    if DRAINING.is_set():
        return {"ok": f"draining: not consuming {queue}"}
    if not AUTOMATIC.is_set():
        return {"ok": f"queues chosen with -Q: not consuming {queue}"}
    if not scope_from_env().accepts(uuid.UUID(organization_id), worker_type or None):
        return {"ok": f"{queue} is outside this worker's scope"}
    state.consumer.call_soon(state.consumer.add_task_queue, queue)
    return {"ok": f"add consumer {queue}"}


def sync_consumers(
    consumer: Any, database_url: str, scope: WorkerScope
) -> tuple[list[str], list[str]]:
    """Consume every TaskForge queue of ``scope``, and no other; return (added, cancelled).

    Only TaskForge's own queues (``tf.*``) are touched, never a -Q selection,
    and nothing once this worker is drained.
    """
    if DRAINING.is_set() or not AUTOMATIC.is_set():
        return [], []
    # Read what we consume before SQL: a queue a broadcast adds meanwhile was
    # committed before its broadcast, so SQL lists it and it is never cancelled.
    # set() copies the consumer thread's dict in one step (no Python code runs).
    consumed = {
        name
        for name in set(consumer.app.amqp.queues.consume_from)
        if name.startswith(JOB_QUEUE_PREFIX)
    }
    with session_scope(database_url) as session:
        wanted = set(queues_in_scope(session, scope))
    added, cancelled = sorted(wanted - consumed), sorted(consumed - wanted)
    for name in added:
        consumer.call_soon(consumer.add_task_queue, name)
    for name in cancelled:
        consumer.call_soon(consumer.cancel_task_queue, name)
    return added, cancelled


def cancel_all_consumers(consumer: Any) -> list[str]:
    """Mark this process drained and stop consuming every queue; return the queues."""
    DRAINING.set()
    queues = list(consumer.app.amqp.queues.consume_from)
    for name in queues:
        consumer.call_soon(consumer.cancel_task_queue, name)
    return queues


@control_command(name=DRAIN_COMMAND)
def taskforge_drain(state: Any, **_: Any) -> dict[str, str]:
    """Stop consuming every queue (Celery's cancel_consumer on each); running jobs finish."""
    queues = cancel_all_consumers(state.consumer)
    return {"ok": f"draining: cancelled {len(queues)} consumer(s)"}
