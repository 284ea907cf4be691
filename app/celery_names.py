"""Every name TaskForge uses on the broker, in one place: tasks, queues, task ids, commands.

Importable without Celery: the models, the core, the Celery adapters (``tasks/``),
``celeryconfig`` and the monitor all read these names from here.
"""

from __future__ import annotations

import uuid

# Tasks.
RUN_JOB = "taskforge.run_job"
RELAY = "taskforge.relay"
SWEEP = "taskforge.sweep"
REPUBLISH_LOST = "taskforge.republish_lost"
WORKERS_OFFLINE = "taskforge.workers_offline"
REDRIVE_WATCH = "taskforge.redrive_watch"
FOLD_JOB_COUNTS = "taskforge.fold_job_counts"

# How often beat sends the periodic tasks (celeryconfig); explain quotes them.
RELAY_EVERY_SECONDS = 2.0
SWEEP_EVERY_SECONDS = 5.0
REPUBLISH_LOST_EVERY_SECONDS = 30.0
REDRIVE_WATCH_EVERY_SECONDS = 2.0
# Reads sum the deltas not folded yet: a few seconds of changes stay cheap to add.
FOLD_JOB_COUNTS_EVERY_SECONDS = 5.0

# Queues.  One Celery queue per TaskForge queue, named after its immutable id, so
# renaming a queue never strands messages; internal tasks travel on their own queue.
JOB_QUEUE_PREFIX = "tf."
INTERNAL_QUEUE = "taskforge.internal"

# Remote-control commands a TaskForge worker answers (``tasks/worker_commands.py``).
CONSUME_COMMAND = "taskforge_consume"
DRAIN_COMMAND = "taskforge_drain"


def job_queue_name(queue_id: uuid.UUID | str) -> str:
    """Name the Celery queue of a TaskForge queue after its id."""
    return f"{JOB_QUEUE_PREFIX}{queue_id}"


def job_queue_id(name: str) -> uuid.UUID | None:
    """The TaskForge queue id of a Celery queue name; None for any other queue."""
    if not name.startswith(JOB_QUEUE_PREFIX):
        return None
    try:
        return uuid.UUID(name[len(JOB_QUEUE_PREFIX) :])
    except ValueError:
        return None


def priority_step(priority: int) -> int:
    """The Redis priority step of a TaskForge priority: 9, the most urgent, is step 0."""
    return 9 - priority


def task_id(job_id: uuid.UUID | str, attempt: int) -> str:
    """Name the Celery task that wakes ``job_id`` for attempt ``attempt + 1``."""
    return f"{job_id}:{attempt}"


def parse_task_id(value: object) -> tuple[uuid.UUID, int] | None:
    """Split a TaskForge task id ``<job id>:<attempt>``; None for any other task."""
    if not isinstance(value, str):
        return None
    job, _, attempt = value.partition(":")
    try:
        return uuid.UUID(job), int(attempt)
    except ValueError:
        return None
