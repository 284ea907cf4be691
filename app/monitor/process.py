"""The monitor process: receive Celery events until told to stop, reconnecting as needed.

It answers ``/healthz`` and ``/readyz`` on ``TASKFORGE_MONITOR_BIND`` (``app.monitor.health``):
ready while its event receiver is connected and Redis answers.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import redis
from celery import Celery

from app.config import load_settings
from app.heap import freeze_startup_objects
from app.monitor.events import EventHandler
from app.monitor.health import HealthServer
from app.monitor.lookups import Lookups
from app.monitor.refresh import Refresher
from app.runtime import Runtime

logger = logging.getLogger(__name__)

RECONNECT_SECONDS = 2.0
# Events are applied in batches of up to this many, at most this many seconds late.
BATCH_SIZE = 500
BATCH_DELAY = 0.1


class Monitor:
    """An event receiver plus a refresher thread, both writing to the live state."""

    def __init__(self, runtime: Runtime) -> None:
        self.celery: Celery = runtime.celery
        self.store = runtime.live_state
        self.lookups = Lookups(runtime.database_url)
        self.handler = EventHandler(
            self.store, self.lookups, batch_size=BATCH_SIZE, max_delay=BATCH_DELAY
        )
        self.refresher = Refresher(
            self.celery,
            self.store,
            self.lookups,
            self.handler,
            runtime.settings.monitor_inspect_seconds,
        )
        self.stop_event = threading.Event()
        self.receiving = threading.Event()
        self._receiver: Any = None

    def stop(self) -> None:
        """Ask the receiver and the refresher to finish (safe from a signal handler)."""
        self.stop_event.set()
        if self._receiver is not None:
            self._receiver.should_stop = True

    def run(self) -> None:
        """Receive events until :meth:`stop`; survive broker restarts."""
        threads = [
            threading.Thread(target=target, name=name, daemon=True)
            for name, target in (("refresh", self._refresh), ("flush", self._flush))
        ]
        for thread in threads:
            thread.start()
        try:
            while not self.stop_event.is_set():
                try:
                    self._receive()
                except Exception:
                    logger.warning("monitor: event stream lost; reconnecting", exc_info=True)
                    self.stop_event.wait(RECONNECT_SECONDS)
        finally:
            self.stop_event.set()
            for thread in threads:
                thread.join(timeout=5)
            self.handler.flush()
            self.store.close()

    def readiness(self) -> dict[str, bool]:
        """What /readyz reports: the event stream is connected and Redis answers."""
        try:
            store_ok = bool(self.store.redis.ping())
        except redis.RedisError:
            store_ok = False
        return {"events": self.receiving.is_set() and store_ok, "redis": store_ok}

    def _refresh(self) -> None:
        self.refresher.run(self.stop_event)

    def _flush(self) -> None:
        while not self.stop_event.wait(BATCH_DELAY):
            self.handler.flush()

    def _receive(self) -> None:
        with self.celery.connection_for_read() as connection:
            receiver = self.celery.events.Receiver(connection, handlers={"*": self.handler})
            self._receiver = receiver
            if self.stop_event.is_set():
                return
            logger.info("monitor: receiving events from %s", connection.as_uri())
            self.receiving.set()
            try:
                receiver.capture(limit=None, timeout=None, wakeup=True)
            finally:
                self.receiving.clear()


def main() -> None:
    """Run the monitor in the foreground until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    monitor = Monitor(Runtime.from_settings(settings))
    health = HealthServer(settings.monitor_bind, monitor.readiness)
    health.start()
    logger.info("monitor: health checks on http://%s/healthz and /readyz", settings.monitor_bind)

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("monitor: received %s; stopping", signal.Signals(signum).name)
        monitor.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    freeze_startup_objects()
    try:
        monitor.run()
    finally:
        health.stop()
    logger.info("monitor: stopped")
