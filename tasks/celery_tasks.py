"""The user's own Celery tasks as TaskForge job types.

A worker started with ``TASKFORGE_TASK_MODULES=mypkg.tasks`` imports those modules
unchanged and registers every Celery task they define (``@shared_task`` or
``@app.task`` of any app) as a job type named after the task (``task.name``), so
it is advertised and routed like a ``@job`` handler.  The job's payload is the
call: ``{"args": [...], "kwargs": {...}}`` (both optional).  The task body runs
as a direct call with ``self.request`` set (task id ``<job id>:<attempt>``,
``retries`` = earlier attempts): ``self.retry()`` or an ``autoretry_for``
exception raises into TaskForge, which retries, like any failed attempt, while
the job has attempts left (``taskforge_client.celery.submit_task`` sets
``max_attempts`` from ``max_retries``).  Timeouts and backoff are the queue's
settings; the task's own time limits and ``retry_backoff`` do not apply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from celery import Task

from tasks.handlers import JobContext, JobFailed, register

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
        # A direct call (``called_directly``), so ``self.retry()`` raises here rather
        # than sending a Celery message; ``request.retries`` counts earlier attempts.
        task.push_request(
            id=f"{ctx.job_id}:{ctx.attempt - 1}", args=args, kwargs=kwargs, retries=ctx.attempt - 1
        )
        try:
            return task.run(*args, **kwargs)
        finally:
            task.pop_request()

    return run


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
    return names
