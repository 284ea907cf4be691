"""Periodic refreshes the events cannot give: pool sizes, consumed queues, SQL snapshots.

Every ``TASKFORGE_MONITOR_INSPECT_SECONDS`` the live workers are asked, with one
short ``inspect`` each for ``stats``, ``active_queues``, ``active`` and
``registered``, for their pool (size, implementation, processes), prefetch count,
resource usage, queues, running tasks and registered Celery tasks; the
longest-waiting due job per queue is read from SQL.  The nodename → worker-row
registry is re-read every two seconds so a drain shows up quickly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from app.monitor.events import EventHandler
from app.monitor.lookups import Lookups
from app.services.live_state import LiveState, is_alive

logger = logging.getLogger(__name__)

REGISTRY_SECONDS = 2.0
INSPECT_TIMEOUT = 1.0


class Refresher:
    """Keep the slow-changing parts of the live view fresh from a background thread."""

    def __init__(
        self,
        celery: Celery,
        store: LiveState,
        lookups: Lookups,
        handler: EventHandler,
        inspect_seconds: float,
    ) -> None:
        self.celery = celery
        self.store = store
        self.lookups = lookups
        self.handler = handler
        self.inspect_seconds = inspect_seconds

    def run(self, stop: threading.Event) -> None:
        """Refresh until ``stop`` is set."""
        tick = min(REGISTRY_SECONDS, self.inspect_seconds)
        next_inspect = 0.0
        while not stop.is_set():
            _guarded(self.refresh_registry)
            if time.monotonic() >= next_inspect:
                _guarded(self.inspect)
                _guarded(self.refresh_oldest)
                next_inspect = time.monotonic() + self.inspect_seconds
            stop.wait(tick)

    def refresh_registry(self) -> None:
        """Snapshot the self-registered workers' SQL rows into Redis."""
        self.store.set_registry(self.lookups.registered_workers())

    def refresh_oldest(self) -> None:
        """Snapshot since when each queue's longest-waiting due job waits, into Redis."""
        self.store.set_oldest(self.lookups.oldest_waiting())

    def inspect(self) -> None:
        """Ask live workers for pool size, queues and running tasks."""
        states = self.store.worker_states()
        for host in self.store.known_hosts() - states.keys():
            self.store.forget_worker(host)
        live = [host for host, state in states.items() if is_alive(state)]
        if not live:
            return
        asked_at = time.time()
        inspector = self.celery.control.inspect(
            destination=live, timeout=INSPECT_TIMEOUT, limit=len(live)
        )
        stats: dict[str, Any] = inspector.stats() or {}
        queues: dict[str, Any] = inspector.active_queues() or {}
        active: dict[str, Any] = inspector.active() or {}
        registered: dict[str, Any] = inspector.registered() or {}
        for host in live:
            fields: dict[str, Any] = {}
            facts = stats.get(host) or {}
            pool = facts.get("pool") or {}
            if "max-concurrency" in pool:
                fields["pool_size"] = str(pool["max-concurrency"])
            if pool:
                fields["pool"] = pool
            for name in ("prefetch_count", "rusage"):
                if name in facts:
                    fields[name] = facts[name]
            if host in registered:
                fields["registered"] = sorted(registered[host])
            if host in queues:
                fields["queues"] = sorted(q["name"] for q in queues[host])
                self.handler.note_queues(host, fields["queues"])
            if fields:
                self.store.update_worker(host, fields)
            if host in active:
                running = {task["id"] for task in active[host]}
                self.store.prune_active(host, running, asked_at)
            self.handler.publish_worker(host)


def _guarded(step: Callable[[], None]) -> None:
    try:
        step()
    except Exception:
        logger.warning("monitor: %s failed", step.__name__, exc_info=True)
