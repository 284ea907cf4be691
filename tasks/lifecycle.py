"""A Celery worker's life in TaskForge's SQL: register, heartbeat, drain, sign off.

Connected through Celery signals, so ``taskforge worker`` and a plain
``celery -A tasks.celery_app worker`` behave the same:

- ``worker_ready`` starts a heartbeat thread in the worker's main process.  Its
  first beat registers the worker by nodename (``register_system_worker``) with
  its queues, concurrency, ``TASKFORGE_WORKER_TYPE``, ``TASKFORGE_WORKER_ORGANIZATION``
  (unset: a shared platform worker), ``TASKFORGE_WORKER_CAPABILITIES`` (JSON) and
  the job types it has handlers for, so other workers and the API know who runs what.
- Every ``TASKFORGE_HEARTBEAT_SECONDS`` (10) it records the running job count,
  queues and problems: a pool with no live process, or heartbeat writes that
  failed.  Problems make the worker ``unhealthy``; ``tasks.maintenance`` marks a
  worker silent for three intervals ``offline``.
- Each beat, first thing, brings the consumed queues in line with SQL
  (``tasks.worker_commands.sync_consumers``), so a queue whose ``taskforge_consume``
  broadcast this worker missed is consumed within one interval.
- Drained (``POST /workers/{id}/drain``): the ``taskforge_drain`` broadcast
  cancels every consumer at once; the heartbeat repeats that if the broadcast was
  missed.  When nothing runs, is reserved or waits for its ETA, the worker marks
  itself ``offline`` and stays idle, or, with ``TASKFORGE_DRAIN_SHUTDOWN=1``,
  shuts down warm.
- ``worker_shutdown`` stops the thread and marks the worker ``offline``.
- When the main process exits, after a warm or a cold shutdown, it signs off too
  and hands back at once the jobs it left unfinished (its soft shutdown cancelled
  them; ``app.services.leases.hand_back_jobs``) instead of leaving them to their leases.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import uuid
from collections import deque
from typing import Any

from celery import signals
from celery.worker import state as worker_state

from app.config import Settings
from app.db import session_scope
from app.forksafe import FORK_GATE
from app.services import workers as worker_service
from app.services.leases import hand_back_jobs
from app.services.workers import Health
from tasks.handlers import registered_job_types
from tasks.worker import runtime
from tasks.worker_commands import DRAINING, cancel_all_consumers, scope_from_env, sync_consumers

logger = logging.getLogger(__name__)

# Heartbeats whose write failed, among the last WINDOW, that make a worker unhealthy.
FAILED_WRITES_UNHEALTHY = 2
WINDOW = 5


def capabilities_from_env() -> Any:
    """Parse ``TASKFORGE_WORKER_CAPABILITIES``; a malformed value is logged and ignored."""
    raw = os.environ.get("TASKFORGE_WORKER_CAPABILITIES")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("TASKFORGE_WORKER_CAPABILITIES is not JSON; ignored")
        return None


def live_pool_processes(pool: Any) -> int | None:
    """Count the prefork pool's live child processes; None for pools without children."""
    processes = getattr(getattr(pool, "_pool", None), "_pool", None)
    if processes is None:
        return None
    alive = 0
    for process in list(processes):
        try:
            os.kill(process.pid, 0)
        except (ProcessLookupError, PermissionError, TypeError):
            continue
        alive += 1
    return alive


def consumed_queues(consumer: Any) -> list[str]:
    """Names of the queues the worker consumes now."""
    return sorted(consumer.app.amqp.queues.consume_from)


def busy_requests() -> int:
    """Jobs running, reserved, or held for their ETA in this worker."""
    return (
        len(worker_state.active_requests)
        + len(worker_state.reserved_requests)
        + len(worker_state.scheduled_requests)
    )


class Heartbeat(threading.Thread):
    """Register the worker, then report its health until stopped or drained."""

    def __init__(self, consumer: Any, settings: Settings) -> None:
        super().__init__(name="taskforge-heartbeat", daemon=True)
        self.consumer = consumer
        self.hostname: str = consumer.hostname
        self.settings = settings
        self.scope = scope_from_env()
        self.stopped = threading.Event()
        self.worker_id: uuid.UUID | None = None
        self.failed_writes: deque[bool] = deque(maxlen=WINDOW)

    def run(self) -> None:
        """Beat now, then every interval, until stopped or drained."""
        while not self.stopped.is_set():
            try:
                # No pool process may fork while this thread holds SQL locks.
                with FORK_GATE.section():
                    done = self.beat()
            except Exception:
                logger.exception("heartbeat of %s failed", self.hostname)
                done = False
            if done:
                return
            self.stopped.wait(self.settings.heartbeat_seconds)

    def stop(self) -> None:
        """Ask the thread to finish."""
        self.stopped.set()

    def health(self) -> Health:
        """The report sent with the next heartbeat."""
        problems = []
        processes = live_pool_processes(self.consumer.pool)
        if processes == 0:
            problems.append("the pool has no live processes")
        failures = sum(self.failed_writes)
        if failures >= FAILED_WRITES_UNHEALTHY:
            problems.append(f"{failures} of the last {WINDOW} heartbeats could not be written")
        return Health(
            active_jobs=len(worker_state.active_requests),
            queues=consumed_queues(self.consumer),
            problems=problems,
        )

    def sync_queues(self) -> None:
        """Consume the queues of this worker's scope that SQL lists, and only those."""
        try:
            added, cancelled = sync_consumers(self.consumer, self.settings.database_url, self.scope)
        except Exception:
            logger.warning("could not read the queues of %s", self.hostname, exc_info=True)
            return
        if added or cancelled:
            logger.info("queues of %s: consuming %s, cancelled %s", self.hostname, added, cancelled)

    def register(self) -> None:
        """Upsert this worker's row by nodename."""
        with session_scope(self.settings.database_url) as session:
            worker = worker_service.register_system_worker(
                session,
                hostname=self.hostname,
                organization_id=self.scope.organization_id,
                worker_type=self.scope.worker_type,
                capabilities=capabilities_from_env(),
                concurrency=int(getattr(self.consumer.controller, "concurrency", 1) or 1),
                queues=consumed_queues(self.consumer),
                job_types=registered_job_types(),
            )
            self.worker_id = worker.id
        logger.info("registered worker %s as %s", self.hostname, self.worker_id)

    def beat(self) -> bool:
        """Register or heartbeat once; return True once a drain has completed."""
        self.sync_queues()
        try:
            if self.worker_id is None:
                self.register()
                self.failed_writes.append(False)
                return False
            health = self.health()
            with session_scope(self.settings.database_url) as session:
                row = worker_service.record_system_heartbeat(
                    session, worker_id=self.worker_id, health=health
                )
                drain_mode = bool(row and row.drain_mode)
            self.failed_writes.append(False)
        except Exception:
            self.failed_writes.append(True)
            logger.warning("could not record the heartbeat of %s", self.hostname, exc_info=True)
            return False
        if row is None:
            self.worker_id = None  # the row was deleted: register again next beat
            return False
        return drain_mode and self.drain()

    def drain(self) -> bool:
        """Make sure consumers are cancelled; sign off once nothing is left to run."""
        if not DRAINING.is_set():
            cancel_all_consumers(self.consumer)
        if busy_requests():
            return False
        self.sign_off()
        logger.info("worker %s drained: offline", self.hostname)
        if self.settings.drain_shutdown:
            os.kill(os.getpid(), signal.SIGTERM)
        return True

    def sign_off(self) -> None:
        """Mark this worker offline."""
        if self.worker_id is None:
            return
        with session_scope(self.settings.database_url) as session:
            worker_service.mark_system_worker_offline(session, worker_id=self.worker_id)


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _start_heartbeat(sender: Any, **_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(sender, runtime().settings)
    _heartbeat.start()
    # Celery sends worker_shutdown after a warm shutdown only, not after the cold one
    # whose soft phase cancels running jobs: the main process's exit follows both.
    atexit.register(_at_exit, sender.hostname, os.getpid())


@signals.worker_shutdown.connect
def _sign_off(**_: Any) -> None:
    heartbeat = _heartbeat
    if heartbeat is None:
        return
    heartbeat.stop()
    heartbeat.join(timeout=5)
    try:
        heartbeat.sign_off()
    except Exception:
        logger.warning("could not mark %s offline", heartbeat.hostname, exc_info=True)


def _at_exit(hostname: str, main_pid: int) -> None:
    """Sign off and hand back the jobs left unfinished as the worker's main process exits."""
    if os.getpid() != main_pid:
        return  # a pool process forked later inherited the hook
    _sign_off()
    try:
        hand_back_jobs(runtime().database_url, hostname)
    except Exception:
        logger.warning("%s could not hand its jobs back", hostname, exc_info=True)
