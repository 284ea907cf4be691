"""Celery settings for every TaskForge process (API, gRPC server, workers, beat).

Loaded with ``config_from_object``, when Celery first reads its configuration.  API
and workers must share this module: Redis applies the shortest visibility timeout
of any client on the broker.  SQL, not the broker, is the record of a job's state
(see ``app/services/execution.py``).  The values that come from TaskForge's
settings are read from the environment here, without the rest of the settings'
checks and files: each process validates its whole configuration at start.
"""

from __future__ import annotations

import os

from app.celery_names import (
    FOLD_JOB_COUNTS,
    FOLD_JOB_COUNTS_EVERY_SECONDS,
    INTERNAL_QUEUE,
    REDRIVE_WATCH,
    REDRIVE_WATCH_EVERY_SECONDS,
    RELAY,
    RELAY_EVERY_SECONDS,
    REPUBLISH_LOST,
    REPUBLISH_LOST_EVERY_SECONDS,
    SWEEP,
    SWEEP_EVERY_SECONDS,
    WORKERS_OFFLINE,
)
from app.config import DEFAULT_HEARTBEAT_SECONDS, DEFAULT_REDIS_URL, DEFAULT_SOFT_SHUTDOWN_SECONDS
from app.redis_client import celery_transport_options

broker_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
# Results live in SQL; Celery's result backend would be a second, unbounded copy.
result_backend = None
task_ignore_result = True

# JSON only: pickle would let anyone who can write to Redis run code in a worker.
task_serializer = "json"
accept_content = ["json"]
event_serializer = "json"
task_protocol = 2

# At-least-once: ack after the task ran, and re-deliver when a pool child dies
# (SIGKILL, OOM).  The executor's compare-and-set claim drops the duplicates.
task_acks_late = True
task_reject_on_worker_lost = True
# A failed attempt (Celery state FAILURE) is acked, as a RETRY always is: SQL
# already holds its outcome and TaskForge publishes any next attempt itself.
task_acks_on_failure = True
task_acks_on_timeout = True
# With late acks each pool process reserves only the job it is running, so a
# long job never holds others hostage behind it.
worker_prefetch_multiplier = 1
# A reconnect must not leave a late-ack job running while Redis re-delivers it.
worker_cancel_long_running_tasks_on_connection_loss = True
# SIGTERM gives running jobs this long to finish, then hands them back: the
# `worker` role maps SIGTERM to Celery's cold shutdown (app/roles.py), whose soft
# phase waits this long before cancelling what still runs (docs/deployment.md).
worker_soft_shutdown_timeout = int(
    os.environ.get("TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS") or DEFAULT_SOFT_SHUTDOWN_SECONDS
)

# Redis re-delivers an unacked message after this many seconds; every time
# limit stays below it so a running job is never handed out twice.
VISIBILITY_TIMEOUT = 3600
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    # 10 priority levels, 0 first (TaskForge priority 9 maps to Redis step 0).
    "queue_order_strategy": "priority",
    "priority_steps": list(range(10)),
    # kombu's default separator ("\x06\x16") stays: every Celery client (the
    # celery CLI, Flower) writes its reply bindings with it, and a worker splitting
    # them by another one drops their control messages.
    # REDIS_URL may name Sentinels (sentinel://…;sentinel://…): kombu then asks them
    # for this master (app/redis_client.py).
    **celery_transport_options(broker_url, os.environ.get("TASKFORGE_REDIS_SENTINEL_MASTER")),
}
task_time_limit = 1800
task_soft_time_limit = 1500

# Publishing fails fast when Redis is down; the relay retries unpublished jobs.
task_publish_retry = True
task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
broker_connection_timeout = 2
redis_socket_timeout = 5
redis_socket_connect_timeout = 2

# Internal maintenance tasks travel on their own queue that every worker consumes.
task_default_queue = INTERNAL_QUEUE
# Each worker also consumes its own queue (``<nodename>.dq2``): a worker without a
# job type's handler hands such a job to one that has it (app/services/execution.py).
worker_direct = True
task_default_priority = 0
worker_send_task_events = True
# Celery's consumer, sending task events a batch per 0.1 s instead of one PUBLISH each.
worker_consumer = "tasks.consumer:Consumer"
task_send_sent_event = False
# Lets an organization admin restart a worker's pool (POST /monitor/workers/<host>/pool).
worker_pool_restarts = True

# The relay publishes jobs whose message never left (and far-future ones as
# they come due, with an ETA inside the horizon); the sweeper takes over jobs of
# workers whose lease ran out.  Both are cheap indexed queries.
# Celery's file-backed scheduler, sending only while it holds the beat lock (run
# several beats; exactly one is active) and proving each tick on a liveness file
# (`taskforge health beat`).
beat_scheduler = "tasks.beat:LeaderScheduler"
beat_schedule = {
    "relay-unpublished-jobs": {"task": RELAY, "schedule": RELAY_EVERY_SECONDS},
    "sweep-expired-leases": {"task": SWEEP, "schedule": SWEEP_EVERY_SECONDS},
    # Pending jobs whose message Redis lost (a failover, no persistence, FLUSHALL)
    # or a worker took to its grave go out again.
    "republish-lost-messages": {"task": REPUBLISH_LOST, "schedule": REPUBLISH_LOST_EVERY_SECONDS},
    # Dead-letter redrives whose jobs fail again are stopped.
    "stop-failing-redrives": {"task": REDRIVE_WATCH, "schedule": REDRIVE_WATCH_EVERY_SECONDS},
    # The job counters' deltas (PostgreSQL) are folded into the counts.
    "fold-job-counts": {"task": FOLD_JOB_COUNTS, "schedule": FOLD_JOB_COUNTS_EVERY_SECONDS},
    # Workers silent for three heartbeat intervals are marked offline.
    "mark-silent-workers-offline": {
        "task": WORKERS_OFFLINE,
        "schedule": float(
            os.environ.get("TASKFORGE_HEARTBEAT_SECONDS") or DEFAULT_HEARTBEAT_SECONDS
        ),
    },
}
timezone = "UTC"
enable_utc = True
