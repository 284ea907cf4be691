"""The user's own Celery tasks as TaskForge job types, with their own retry rules and limits.

A worker started with ``TASKFORGE_TASK_MODULES=mypkg.tasks`` imports those modules
unchanged and registers every Celery task they define (``@shared_task`` or
``@app.task`` of any app) as a job type named after the task (``task.name``), so
it is advertised and routed like a ``@job`` handler.  The job's payload is the
call: ``{"args": [...], "kwargs": {...}}`` (both optional).

The task body runs with ``self.request`` set as a worker's eager request (task id
``<job id>:<attempt>``, ``retries`` = earlier attempts, not ``called_directly``),
so Celery's own ``Task.retry`` decides and raises; nothing is sent to Celery,
TaskForge runs the next attempt.  What a failed attempt leads to
(:func:`after_failure`), as in Celery, while the job has attempts left
(``taskforge_client.celery.submit_task`` sets ``max_attempts`` from
``max_retries``):

- ``Retry`` (``self.retry(countdown=...)`` / ``eta=``, or an ``autoretry_for``
  exception, delayed by ``retry_backoff`` / ``retry_backoff_max`` /
  ``retry_jitter``): the next attempt runs after that delay, not the queue's
  backoff (``default_retry_delay`` when ``retry()`` names no time);
- what ``retry()`` raises once ``max_retries`` is spent (``MaxRetriesExceededError``
  or the task's exception): a final failure;
- any other exception of a task that declares ``autoretry_for`` (one it does not
  list, or lists in ``dont_autoretry_for``): a final failure;
- any other exception of a task without ``autoretry_for``: the queue's rule
  (retry after the queue's backoff).

Plain Celery messages: a TaskForge worker does not consume the loaded tasks'
own messages (:class:`RefusePlainMessages`), so a ``send_task``/``apply_async``
of one straight into a ``tf.*`` queue is refused as an unknown task (and logged
with how to submit it) instead of running untracked, outside SQL and any
tenant's view.  Celery producers submit with ``taskforge_client.celery.submit_task``.
The tasks stay registered, so a task that calls another (``other.delay()``)
still sends that message to the task's own Celery queue, as it did before.

Time limits: a task's own ``soft_time_limit`` or ``time_limit`` (a value other
than its app's configured default) tightens its jobs' queue ``timeout_seconds``
(:class:`JobRequest`).  The attempt is then recorded as timed out after the
tighter limit, retried or failed by the rules above; the pool process is killed
``HARD_LIMIT_GRACE_SECONDS`` later if the task ignores the soft limit.
"""

from __future__ import annotations

import importlib
import logging
import numbers
from collections.abc import Callable
from datetime import UTC, datetime
from traceback import walk_tb
from typing import Any

from celery import Task, bootsteps, signals
from celery.exceptions import MaxRetriesExceededError, Retry
from celery.worker.request import Request

from app.services.execution import NO_RETRY, QUEUE_BACKOFF, AfterFailure
from tasks.celery_app import app
from tasks.handlers import JobContext, JobFailed, register
from tasks.publisher import HARD_LIMIT_GRACE_SECONDS

logger = logging.getLogger(__name__)

# Job types of the loaded tasks: the task (its retry policy), its own time limit.
_LOADED: dict[str, Task] = {}
_TIME_LIMITS: dict[str, float] = {}

PAYLOAD_SHAPE = 'a Celery task job needs the payload {"args": [...], "kwargs": {...}}'


def call_arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """Split a job's payload into the task's positional and keyword arguments."""
    if payload is None:
        return [], {}
    if not isinstance(payload, dict) or set(payload) - {"args", "kwargs"}:
        raise JobFailed(PAYLOAD_SHAPE)
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise JobFailed(PAYLOAD_SHAPE)
    return args, kwargs


def _handler(task: Task) -> Callable[[Any, JobContext], Any]:
    def run(payload: Any, ctx: JobContext) -> Any:
        args, kwargs = call_arguments(payload)
        # An eager worker request: ``self.retry()`` applies the task's retry
        # policy and raises ``Retry`` (or gives up) without sending a message.
        task.push_request(
            id=f"{ctx.job_id}:{ctx.attempt - 1}",
            args=args,
            kwargs=kwargs,
            retries=ctx.attempt - 1,
            called_directly=False,
            is_eager=True,
        )
        try:
            return task.run(*args, **kwargs)
        finally:
            task.pop_request()

    return run


def after_failure(job_type: str, exc: BaseException) -> AfterFailure:
    """What a failed attempt of ``job_type`` leads to: its Celery task's rule, or the queue's."""
    task = _LOADED.get(job_type)
    if task is None:
        return QUEUE_BACKOFF
    if isinstance(exc, Retry):
        return AfterFailure(delay_seconds=_seconds_until(exc.when))
    declares_autoretry = bool(getattr(task, "autoretry_for", None))
    if isinstance(exc, MaxRetriesExceededError) or _raised_by_retry(exc) or declares_autoretry:
        return NO_RETRY
    return QUEUE_BACKOFF


def _raised_by_retry(exc: BaseException) -> bool:
    # ``Task.retry`` re-raises the task's own exception once ``max_retries`` is
    # spent; only its frame in the traceback tells that from a plain failure.
    return any(frame.f_code is Task.retry.__code__ for frame, _ in walk_tb(exc.__traceback__))


def _seconds_until(when: Any) -> float | None:
    if isinstance(when, datetime):
        due = when if when.tzinfo else when.replace(tzinfo=UTC)
        return max(0.0, (due - datetime.now(UTC)).total_seconds())
    if isinstance(when, numbers.Real):
        return max(0.0, float(when))
    return None


def time_limit(job_type: str | None, queue_timeout: float) -> float:
    """The soft time limit of a ``job_type`` job: the queue's, or its task's when tighter."""
    own = _TIME_LIMITS.get(job_type) if job_type is not None else None
    return queue_timeout if own is None else min(queue_timeout, own)


def _declared_limit(task: Task) -> float | None:
    # ``Task.bind`` copies the app's ``task_(soft_)time_limit`` onto every task
    # that sets none; that default is the app's, not the task's own limit.
    conf = task.app.conf
    declared = [
        float(value)
        for value, default in (
            (task.soft_time_limit, conf.task_soft_time_limit),
            (task.time_limit, conf.task_time_limit),
        )
        if value and value != default
    ]
    return min(declared, default=None)


class JobRequest(Request):
    """A ``run_job`` message's request, its time limits tightened by its job type's task.

    The worker's main process applies the limits a message carries
    (``Request.time_limits``: hard, soft); the publisher sets them from the
    queue, which knows nothing of the task.
    """

    time_limits: tuple[float | None, float | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not _TIME_LIMITS:
            return
        job_type = self.kwargs.get("job_type") if isinstance(self.kwargs, dict) else None
        hard, soft = self.time_limits
        if job_type in _TIME_LIMITS and soft:
            tighter = time_limit(job_type, soft)
            if tighter < soft:
                limit = tighter + HARD_LIMIT_GRACE_SECONDS
                self.time_limits = (min(hard, limit) if hard else limit, tighter)


def load_task_modules(spec: str) -> list[str]:
    """Import each comma-separated module and register its Celery tasks; return their names."""
    names: list[str] = []
    for module_name in filter(None, (part.strip() for part in spec.split(","))):
        module = importlib.import_module(module_name)
        for value in list(vars(module).values()):
            # ``@shared_task`` returns a lazy proxy; isinstance evaluates it.
            if isinstance(value, Task) and value.name not in names:
                register(value.name, _handler(value))
                names.append(value.name)
                _LOADED[value.name] = value
                limit = _declared_limit(value)
                if limit is not None:
                    _TIME_LIMITS[value.name] = limit
    return names


class RefusePlainMessages(bootsteps.StartStopStep):
    """Drop the consumer's handlers of the loaded tasks' own Celery messages.

    A ``@shared_task`` registers itself on TaskForge's app too, so the worker
    would otherwise run a plain message of it untracked.  Without a handler,
    Celery rejects the message as an unknown task (``task_unknown``).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        """Remove the loaded tasks from the consumer's message strategies."""
        for name in _LOADED:
            parent.strategies.pop(name, None)


app.steps["consumer"].add(RefusePlainMessages)


@signals.task_unknown.connect
def _explain_plain_message(name: str | None = None, **_: Any) -> None:
    """Say how to submit a loaded task that arrived as a plain Celery message."""
    if name in _LOADED:
        logger.error(
            "refused a plain Celery message for task %r: TaskForge runs it only as a job "
            "(taskforge_client.celery.submit_task or POST /api/v1/jobs with job_type %r)",
            name,
            name,
        )
