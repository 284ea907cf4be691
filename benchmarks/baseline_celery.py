"""The raw-Celery baseline: TaskForge's broker settings and three small tasks.

Same broker (``$REDIS_URL``), JSON only, no result backend, ``acks_late``,
prefetch 1 and the priority transport options of ``celeryconfig.py``.  Workers
run it with ``celery -A benchmarks.baseline_celery worker -Q <queue> ...``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

DONE_KEY = "bench:done"
STAMPS_KEY = "bench:stamps"

app = Celery("taskforge_bench_baseline")
app.conf.update(
    broker_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0"),
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": 3600,
        "queue_order_strategy": "priority",
        "priority_steps": list(range(10)),
    },
    task_default_queue="bench.default",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    """One client per (pool child) process, made on first use."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url)
    return _client


@app.task(name="bench.count")
def count(_job: object = None) -> None:
    """A no-op that records its completion time (one Redis RPUSH)."""
    _redis().rpush(DONE_KEY, repr(time.time()))


@app.task(name="bench.stamp")
def stamp(index: int) -> None:
    """Record when the task body started (index and wall-clock time)."""
    _redis().rpush(STAMPS_KEY, f"{index} {time.time()!r}")


class _TrackedSQL:
    """One autocommitting DBAPI connection to ``$DATABASE_URL`` and the two UPDATEs."""

    def __init__(self) -> None:
        from benchmarks.baseline_db import make_engine

        self.engine = engine = make_engine()
        # Kept for the process's life: the pool would take the connection back
        # once its proxy is garbage.
        self.connection: Any = engine.raw_connection()
        dbapi: Any = self.connection.dbapi_connection
        if engine.dialect.name == "sqlite":
            dbapi.isolation_level = None
            mark = "?"
        else:
            dbapi.autocommit = True
            mark = "%s"
        self.claim = (
            f"UPDATE bench_tracked SET status = 'processing', started_at = {mark} "
            f"WHERE id = {mark} AND status = 'pending'"
        )
        self.succeed = (
            f"UPDATE bench_tracked SET status = 'succeeded', completed_at = {mark} "
            f"WHERE id = {mark} AND status = 'processing'"
        )

    def close(self) -> None:
        """Close the connection and its engine's pool."""
        self.connection.close()
        self.engine.dispose()


_tracked_sql: _TrackedSQL | None = None


@app.task(name="bench.tracked")
def tracked(job_id: str) -> None:
    """Claim the job's row, then record its success: the least SQL a tracked task needs.

    Each UPDATE is a compare-and-set in a transaction of its own; the rate comes
    from ``completed_at``, so the task writes nothing to Redis.
    """
    global _tracked_sql
    if _tracked_sql is None:
        _tracked_sql = _TrackedSQL()
    sql = _tracked_sql
    cursor = sql.connection.cursor()
    try:
        cursor.execute(sql.claim, (time.time(), job_id))
        if cursor.rowcount == 1:
            cursor.execute(sql.succeed, (time.time(), job_id))
    finally:
        cursor.close()
