"""Celery beat's scheduler: exactly one active beat, and a liveness file for probes.

Run two or more beats for availability: they share one Redis lock with a lease
(redis-py's ``Lock``: a random token, renewed and released by compare-and-set
scripts). The holder sends the periodic tasks and renews the lease on every tick;
the others tick once a second, sending nothing, until the lock is free. A beat
stopped with SIGTERM releases the lock, so a standby takes over within a second;
a killed or cut-off one loses it when the lease runs out (``LEASE_SECONDS``).

No periodic task fires twice: a beat that becomes active starts every entry's
interval afresh (the previous holder may have sent it a moment ago, and the
schedule files are per host), and a holder that cannot renew its lease, Redis
down or the lease lost, steps down before it sends anything else. The price is
at most one interval of delay per entry after a takeover; every periodic task
here is a catch-up sweep, so a late run loses nothing.

Beat answers no request and keeps no connection a probe could see, so its proof of
life is a file it touches after every tick, active or standby: ``taskforge health
beat`` reads its age. A file, not a Redis key, so a Redis outage does not make beat
look dead (a restart would not help it) and the probe needs nothing but the local disk.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
from celery.beat import PersistentScheduler
from redis.exceptions import LockError

from app.config import VAR_DIR
from app.redis_client import connect
from app.roles import BEAT_LIVENESS_FILE

logger = logging.getLogger(__name__)

LOCK_KEY = "taskforge:beat:leader"
# A killed active beat is replaced after at most this long (plus one standby tick).
LEASE_SECONDS = 10.0
# The holder renews at least this often, well inside the lease.
RENEW_EVERY_SECONDS = LEASE_SECONDS / 4
STANDBY_TICK_SECONDS = 1.0
# Touching the file at most this often is proof enough; a busy tick loop runs far faster.
TOUCH_EVERY_SECONDS = 1.0


class LeaderScheduler(PersistentScheduler):
    """Celery's file-backed scheduler that sends only while it holds the beat lock."""

    liveness_file = VAR_DIR / BEAT_LIVENESS_FILE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._touched_at = 0.0
        self._active = False
        super().__init__(*args, **kwargs)
        conf = self.app.conf
        self._redis = connect(
            conf.broker_url, sentinel_master=conf.broker_transport_options.get("master_name")
        )
        self._lock = self._redis.lock(
            LOCK_KEY, timeout=LEASE_SECONDS, blocking=False, thread_local=False
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due when this beat is the active one; prove the tick on the file."""
        if self._lead():
            interval = min(float(super().tick(*args, **kwargs)), RENEW_EVERY_SECONDS)
        else:
            interval = STANDBY_TICK_SECONDS
        self._touch()
        return interval

    def _lead(self) -> bool:
        """Renew the lease, or take the lock when it is free; step down on any doubt."""
        try:
            if self._active:
                self._lock.reacquire()
            elif self._lock.acquire():
                self._become_active()
        except (LockError, redis.RedisError) as exc:
            if self._active:
                logger.warning("beat: lost the beat lock (%s); standing by", exc)
            self._active = False
        return self._active

    def _become_active(self) -> None:
        now = self.app.now()
        for entry in self.schedule.values():
            entry.last_run_at = now
        self._heap = None  # rebuilt from the entries on the next tick
        self._active = True
        logger.info("beat: holding the beat lock; this beat sends the periodic tasks")

    def _touch(self) -> None:
        now = time.monotonic()
        if now - self._touched_at >= TOUCH_EVERY_SECONDS:
            self.liveness_file.parent.mkdir(parents=True, exist_ok=True)
            self.liveness_file.touch()
            self._touched_at = now

    def close(self) -> None:
        """Hand the lock to a standby, close the schedule and remove the liveness file."""
        if self._active:
            with contextlib.suppress(LockError, redis.RedisError):
                self._lock.release()
            self._active = False
        self._redis.close()
        super().close()
        with contextlib.suppress(FileNotFoundError):
            self.liveness_file.unlink()
