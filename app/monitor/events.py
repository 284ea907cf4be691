"""Turn Celery events into TaskForge task items and worker state (like Flower's EventsState).

A job's Celery task is ``taskforge.run_job`` with task id ``<job id>:<attempt>``
and runs on queue ``tf.<queue id>`` (``app.celery_names``); every other task
(relay, sweeper) is ignored.  An attempt's Celery state is true: a failed
attempt sends ``task-retried`` (another attempt follows) or ``task-failed``, with
the exception and traceback; ``task-succeeded`` carries what a successful message
did, an ``app.services.execution.Outcome`` (succeeded, dropped or handed on).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.celery_names import RUN_JOB, job_queue_id, job_queue_name, parse_task_id
from app.monitor.lookups import LRU, Lookups
from app.services.execution import Outcome
from app.services.live_state import LiveState, iso, worker_queues, worker_view

logger = logging.getLogger(__name__)

DROPPED_ERROR = "The job was not claimable (cancelled, paused or already handled); message dropped"
HANDED_ON_ERROR = "This worker has no handler for the job type; handed on to a worker that has one"
HELD_BACK_ERROR = "The queue's policy (a rate limit or concurrency cap) held the job back; it waits"
REJECTED_ERRORS = {Outcome.HANDED_ON: HANDED_ON_ERROR, Outcome.HELD_BACK: HELD_BACK_ERROR}
# task-succeeded result of the executor -> the state shown to tenants.  "failed"
# and "retrying" come only from workers older than the true Celery states, while
# a rolling upgrade runs both.
OUTCOME_STATES = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.FAILED: "failed",
    Outcome.RETRYING: "retried",
    Outcome.DROPPED: "rejected",
    Outcome.HANDED_ON: "rejected",
    Outcome.HELD_BACK: "rejected",
}
EVENT_STATES = {
    "task-received": "received",
    "task-started": "started",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-rejected": "rejected",
    "task-revoked": "revoked",
}
WORKER_FIELDS = ("active", "processed", "freq", "sw_ver", "pid")


class EventHandler:
    """Apply Celery events to the monitor store, in batches.

    Events are buffered until ``batch_size`` arrived or the oldest waited
    ``max_delay`` seconds (the monitor also flushes on a timer).  A batch costs
    one SQL query for the jobs not yet cached and one Redis pipeline, so the
    monitor keeps up with workers running thousands of jobs a second.  The
    defaults (1, 0) apply each event at once.
    """

    def __init__(
        self,
        store: LiveState,
        lookups: Lookups,
        *,
        batch_size: int = 1,
        max_delay: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lookups = lookups
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.clock = clock
        self._pending: list[dict[str, Any]] = []
        self._oldest: float | None = None
        self._started: LRU[str, float] = LRU(10_000)
        self._queues: dict[str, set[str]] = {}
        self._lock = threading.RLock()

    def note_queues(self, host: str, queues: list[str]) -> None:
        """Remember what ``inspect`` says a worker consumes."""
        with self._lock:
            self._queues[host] = set(queues)

    def __call__(self, event: dict[str, Any]) -> None:
        """Buffer one event; apply the buffer once it is full or old enough."""
        with self._lock:
            self._pending.append(event)
            now = time.monotonic()
            if self._oldest is None:
                self._oldest = now
            if len(self._pending) >= self.batch_size or now - self._oldest >= self.max_delay:
                self.flush()

    def flush(self) -> None:
        """Apply the buffered events; a failure is logged, never raised into the receiver."""
        with self._lock:
            events, self._pending, self._oldest = self._pending, [], None
            if not events:
                return
            try:
                self._apply(events)
            except Exception:
                logger.exception("monitor: could not apply %d event(s)", len(events))

    def _apply(self, events: list[dict[str, Any]]) -> None:
        self.lookups.preload(
            parsed[0]
            for parsed in (parse_task_id(e.get("uuid")) for e in events)
            if parsed is not None
        )
        pipe = self.store.pipeline()
        learned: set[str] = set()
        for event in events:
            kind = str(event.get("type", ""))
            try:
                if kind.startswith("task-"):
                    host = self.on_task(kind, event, pipe)
                    if host is not None:
                        learned.add(host)
                elif kind.startswith("worker-"):
                    pipe.execute()  # worker state reads what came before it
                    self.on_worker(kind, event)
            except Exception:
                logger.exception("monitor: could not handle %s", kind)
        pipe.execute()
        for host in learned:
            self.publish_worker(host)

    def on_task(self, kind: str, event: dict[str, Any], pipe: Any) -> str | None:
        """File a task event under its job's organization; return a host seen on a new queue."""
        task_id = event.get("uuid")
        parsed = parse_task_id(task_id)
        if parsed is None or (kind == "task-received" and event.get("name") != RUN_JOB):
            return None
        job_id, attempt = parsed
        info = self.lookups.job(job_id)
        if info is None:
            return None
        at = float(event.get("timestamp") or self.clock())
        state, runtime, error = self._state(kind, event, job_id, str(task_id), at)
        if state is None:
            return None
        host = event.get("hostname")
        item = {
            "job_id": str(job_id),
            "queue_id": info.queue_id,
            "job_type": info.job_type,
            "state": state,
            "worker": host,
            "timestamp": iso(at),
            "runtime": runtime,
            "error": error,
            "attempt": attempt + 1,
        }
        self.store.record_task(info.organization_id, item, task_id=str(task_id), at=at, pipe=pipe)
        if state == "started" and attempt == 0:
            due = max(info.created_at, info.scheduled_for or info.created_at).timestamp()
            self.store.observe_wait(info.queue_id, max(at - due, 0.0), pipe=pipe)
        if state == "received" and host and self._learn_queue(host, job_queue_name(info.queue_id)):
            return str(host)
        return None

    def _learn_queue(self, host: str, queue: str) -> bool:
        # A worker received a job of this queue, so it consumes it: show it to the
        # queue's organization now rather than at the next inspect.
        known = self._queues.setdefault(host, set())
        if queue in known:
            return False
        known.update(self.store.add_worker_queue(host, queue))
        return True

    def _state(
        self, kind: str, event: dict[str, Any], job_id: uuid.UUID, task_id: str, at: float
    ) -> tuple[str | None, float | None, str | None]:
        if kind == "task-started":
            self._started.get(task_id, lambda _key: at)
            return "started", None, None
        if kind == "task-succeeded":
            outcome = Outcome.from_event(event.get("result"))
            state = OUTCOME_STATES.get(outcome, "succeeded") if outcome else "succeeded"
            runtime = event.get("runtime")
            error: str | None = None
            if state in ("failed", "retried"):
                error = self.lookups.error(job_id)
            elif state == "rejected":
                error = REJECTED_ERRORS.get(outcome, DROPPED_ERROR) if outcome else DROPPED_ERROR
            return state, float(runtime) if runtime is not None else None, error
        other = EVENT_STATES.get(kind)
        if other is None:
            return None, None, None
        reason = event.get("exception") or event.get("reason")
        if other in ("failed", "retried") and reason:
            # Celery's event carries the exception's repr ("JobFailed('boom')"); when
            # it is the error SQL recorded for the attempt, show that message, as the
            # job's page does.  A worker that died (WorkerLostError) recorded nothing.
            recorded = self.lookups.error(job_id)
            if recorded and recorded in str(reason):
                reason = recorded
        started = self._started.get(task_id, lambda _key: None)
        elapsed = at - started if started is not None and other != "received" else None
        return other, elapsed, str(reason) if reason else None

    def on_worker(self, kind: str, event: dict[str, Any]) -> None:
        """Update a worker's live hash and tell its organizations."""
        host = event.get("hostname")
        if not host:
            return
        self.store.count_worker_event(host, kind)
        if kind == "worker-offline":
            self.store.worker_offline(host)
        else:
            fields: dict[str, Any] = {k: event[k] for k in WORKER_FIELDS if k in event}
            fields["status"] = "online"
            fields["last_heartbeat"] = repr(float(event.get("timestamp") or self.clock()))
            if "loadavg" in event:
                fields["loadavg"] = json.dumps(list(event["loadavg"]))
            self.store.update_worker(host, fields)
        self.publish_worker(host)

    def publish_worker(self, host: str) -> None:
        """Publish the worker, as each organization it serves sees it, to that organization."""
        state = self.store.worker_state(host)
        if not state:
            return
        registered = self.store.registered(host)
        for org, queues in self._organizations(state, registered).items():
            counts = self.store.org_counts(org, [host])[host]
            view = worker_view(state, registered, org=org, org_queues=queues, counts=counts)
            if view is not None:
                self.store.publish(org, "worker", view)

    def _organizations(
        self, state: dict[str, str], registered: dict[str, Any] | None
    ) -> dict[str, set[str]]:
        orgs: dict[str, set[str]] = {}
        for queue in worker_queues(state, registered):
            queue_id = job_queue_id(queue)
            if queue_id is None:
                continue
            org = self.lookups.queue_organization(queue_id)
            if org is not None:
                orgs.setdefault(org, set()).add(queue)
        if registered and registered.get("organization_id"):
            orgs.setdefault(str(registered["organization_id"]), set())
        return orgs
