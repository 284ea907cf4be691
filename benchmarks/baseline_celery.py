"""The raw-Celery baseline: TaskForge's broker settings and two trivial tasks.

Same broker (``$REDIS_URL``), JSON only, no result backend, ``acks_late``,
prefetch 1 and the priority transport options of ``celeryconfig.py``.  Workers
run it with ``celery -A benchmarks.baseline_celery worker -Q <queue> ...``.
"""

from __future__ import annotations

import os
import time

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
