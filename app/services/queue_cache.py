"""Remember the queues that submits name, per process, under the actor epoch.

A submit reads its queue's row (organization, settings) on every request: one
``SELECT`` and an ORM load, about a tenth of a REST submit's CPU.  Every change of
a queue or of its organization replaces the actor epoch (``app.services.actor_epoch``), and
every call already reads that epoch to resolve its actor (``Actor.epoch``).  So a
queue read under the same epoch as the caller's actor is the queue as it is now,
just as the actor is: the very next call after a change reads the row again, in
every process.  Entries also end after ``actor_cache.TTL_SECONDS``, for changes
made outside TaskForge.

Hand-written rather than ``cachetools`` for the same reason as the actor cache:
an entry's validity is the epoch it was read under.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from app.models import Queue
from app.services.actor_cache import MAX_ENTRIES, TTL_SECONDS
from app.services.actors import Epoch


@dataclass(frozen=True)
class _Cached:
    queue: Queue  # detached, never attached to a session: each use merges a copy
    epoch: bytes | str
    stale_at: float  # time.monotonic()


class QueueCache:
    """Queues by id, each valid under the epoch it was read in."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, queue_id: uuid.UUID, epoch: Epoch) -> Queue | None:
        """``session.get(Queue, queue_id)``, without SQL when cached under ``epoch``."""
        if epoch is None:
            return session.get(Queue, queue_id)
        entry = self._entries.get(queue_id)
        if entry is not None and entry.epoch == epoch and time.monotonic() < entry.stale_at:
            # load=False: the row is taken as it was read, with no SELECT to check it.
            return session.merge(entry.queue, load=False)
        queue = session.get(Queue, queue_id)
        if queue is not None:
            self._put(queue, epoch)
        return queue

    def _put(self, queue: Queue, epoch: bytes | str) -> None:
        columns = inspect(Queue).column_attrs
        # A deep copy: the JSON columns are dicts that the session's instance may change.
        detached = Queue(**{c.key: copy.deepcopy(getattr(queue, c.key)) for c in columns})
        make_transient_to_detached(detached)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[queue.id] = _Cached(detached, epoch, time.monotonic() + TTL_SECONDS)


QUEUES = QueueCache()
