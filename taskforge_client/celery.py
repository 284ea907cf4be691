"""Enqueue a Celery task into a TaskForge queue, as a tracked job, over REST or gRPC.

>>> from taskforge_client import TaskForge
>>> from taskforge_client.celery import submit_task
>>> from mypkg.tasks import add
>>> with TaskForge("http://127.0.0.1:8000", api_key="tf_...") as tf:
...     job = submit_task(tf, add, [2, 3], queue="math")
...     tf.jobs.wait(job).result
5

The same call takes a ``taskforge_client.grpc.GrpcClient`` and submits with
``SubmitJob``.

The job's type is the task's registered name and its payload the call
(``{"args": [...], "kwargs": {...}}``); a worker started with
``TASKFORGE_TASK_MODULES=mypkg.tasks`` runs it, with the task's own retry
policy (``self.retry()``, ``autoretry_for``, ``max_retries``) and time limits;
``max_attempts`` caps its tries.  Celery need not be installed here: a task is
read by its ``name`` and ``max_retries`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from taskforge_client.client import TaskForge
from taskforge_client.models import Job, Queue

if TYPE_CHECKING:
    from taskforge_client.grpc import GrpcClient

# TaskForge's range of max_attempts.
MAX_ATTEMPTS = 10


def attempts_for(task: Any) -> int | None:
    """``max_retries + 1`` of a Celery task (capped at 10); None for a bare name."""
    if isinstance(task, str):
        return None
    retries = getattr(task, "max_retries", None)
    return MAX_ATTEMPTS if retries is None else max(1, min(MAX_ATTEMPTS, int(retries) + 1))


def submit_task(
    client: TaskForge | GrpcClient,
    task: Any,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str | Queue,
    max_attempts: int | None = None,
    **options: Any,
) -> Job:
    """Submit ``task(*args, **kwargs)`` (a Celery task or its name) as a job of ``queue``.

    ``client`` is the REST client or the gRPC client.  ``max_attempts``
    defaults to the task's ``max_retries + 1`` (the queue's default for a bare
    name); ``options`` are ``priority``, ``scheduled_for`` and ``idempotency_key``,
    as ``client.jobs.submit`` / ``client.submit_job`` take them.
    """
    name = task if isinstance(task, str) else str(task.name)
    payload = {"args": list(args), "kwargs": dict(kwargs or {})}
    attempts = max_attempts if max_attempts is not None else attempts_for(task)
    if isinstance(client, TaskForge):
        return client.jobs.submit(queue, name, payload, max_attempts=attempts, **options)
    # gRPC's max_attempts 0 is "the queue's default" (proto3 has no unset integer).
    return client.submit_job(queue, name, payload, max_attempts=attempts or 0, **options)
