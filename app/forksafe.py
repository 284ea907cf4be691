"""Keep ``fork()`` away from background threads' I/O, and give each child fresh SQL pools.

A Celery worker forks pool processes at start and again on ``pool_grow``,
``pool_restart``, autoscale and max-tasks-per-child, while its heartbeat thread
talks to SQL.  A fork copies only the forking thread: a lock another thread held
at that moment (SQLAlchemy's pool mutex, libpq's or glibc's resolver locks) stays
held for ever in the child, whose first ``connect`` then hangs.  Background
threads therefore run their I/O inside :func:`FORK_GATE.section`, and a fork waits
until no thread is inside one.  Nothing on PyPI does this for arbitrary threads
(``multiprocessing.util.register_after_fork`` only runs hooks in the child).

In the child, SQLAlchemy's engines get new, empty pools (``dispose(close=False)``
leaves the parent's connections alone); redis-py pools reset themselves on first
use in a new pid.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.db import dispose_engines

logger = logging.getLogger(__name__)

# A section stuck longer than this (a hung socket) must not stop the pool from
# growing; its thread's locks may then leak into the child, as before.
FORK_WAIT_SECONDS = 30.0


class ForkGate:
    """Let ``fork()`` happen only while no background thread is inside a section."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0

    @contextmanager
    def section(self) -> Iterator[None]:
        """Run the block with no fork in this process until it ends."""
        with self._cond:
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    def before_fork(self) -> None:
        """Wait (bounded) until no section runs; hold the gate through the fork."""
        self._cond.acquire()
        deadline = time.monotonic() + FORK_WAIT_SECONDS
        while self._inside and time.monotonic() < deadline:
            self._cond.wait(deadline - time.monotonic())
        if self._inside:
            logger.warning("forking while %d background section(s) still run", self._inside)

    def after_fork_in_parent(self) -> None:
        """Let sections run again."""
        self._cond.release()

    def after_fork_in_child(self) -> None:
        """Start the child with a fresh gate: the parent's threads do not exist here."""
        self._reset()


FORK_GATE = ForkGate()

os.register_at_fork(
    before=FORK_GATE.before_fork,
    after_in_parent=FORK_GATE.after_fork_in_parent,
    after_in_child=FORK_GATE.after_fork_in_child,
)
# The child's first query must not check out a connection its parent holds.
os.register_at_fork(after_in_child=dispose_engines)
