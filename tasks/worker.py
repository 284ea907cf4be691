"""A worker process's start: its runtime, handler modules, fresh pools and queues.

Connected to Celery's signals, so ``taskforge worker`` and a plain
``celery -A tasks.celery_app worker`` start the same way:

- ``worker_init`` (main process, before the pool forks): read the settings, build
  the runtime (``app.runtime``) and import ``TASKFORGE_HANDLER_MODULES`` and the
  Celery task modules of ``TASKFORGE_TASK_MODULES`` (``tasks.celery_tasks``).
  Unlike the other processes it does not freeze its start-up objects: measured,
  the frozen worker drained jobs slower (``app.heap``);
- every fork of a pool process (start, grow, restart, autoscale, max tasks per
  child) waits for the heartbeat's SQL to finish and gives the child fresh SQL
  pools (``app.forksafe``, imported here);
- ``celeryd_after_setup``: consume every TaskForge queue of the worker's scope
  (unless ``-Q`` chose the queues).
"""

from __future__ import annotations

from typing import Any

from celery import signals

from app import forksafe  # noqa: F401 - installs the fork hooks of worker processes
from app.config import load_settings
from app.db import session_scope
from app.runtime import Runtime
from app.services.workers import queues_in_scope
from tasks.celery_tasks import load_task_modules
from tasks.handlers import load_handler_modules
from tasks.worker_commands import AUTOMATIC, scope_from_env

_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(load_settings())
        load_handler_modules(_runtime.settings.handler_modules)
        load_task_modules(_runtime.settings.task_modules)
    return _runtime


@signals.worker_init.connect
def _start(**_: Any) -> None:
    runtime()


@signals.celeryd_after_setup.connect
def _consume_taskforge_queues(sender: str, instance: Any, **_: Any) -> None:
    """Subscribe a starting worker to every TaskForge queue of its scope."""
    queues = instance.app.amqp.queues
    # kombu keeps the -Q selection in ``_consume_from``; None means "no -Q given".
    if getattr(queues, "_consume_from", None) is not None:
        return  # the operator chose the queues with -Q; respect that choice
    AUTOMATIC.set()
    with session_scope(runtime().database_url) as session:
        names = queues_in_scope(session, scope_from_env())
    for name in names:
        queues.select_add(name)
