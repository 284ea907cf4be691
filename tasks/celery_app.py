"""The Celery application shared by every TaskForge process.

``celery -A tasks.celery_app worker`` runs jobs; ``… beat`` drives the relay.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from app.config import load_settings
from app.db import dispose_engines

app = Celery("taskforge")
app.config_from_object("celeryconfig")
app.conf.include = ["tasks.executor", "tasks.maintenance"]


def _install_publisher() -> None:
    from tasks.dispatch import install  # noqa: PLC0415 - tasks.dispatch imports this module

    install(load_settings().database_url)


@signals.worker_process_init.connect
def _fresh_pool_after_fork(**_: Any) -> None:
    # A pool child must not share its parent's database sockets.
    dispose_engines()


@signals.worker_init.connect
def _worker_publishes_retries(**_: Any) -> None:
    # Retries are staged in the worker's own transactions.
    _install_publisher()


@signals.celeryd_after_setup.connect
def _consume_taskforge_queues(sender: str, instance: Any, **_: Any) -> None:
    """Subscribe a starting worker to every active TaskForge queue."""
    from tasks.consumers import queues_to_consume  # noqa: PLC0415 - needs the worker's settings

    queues = instance.app.amqp.queues
    # kombu keeps the -Q selection in ``_consume_from``; None means "no -Q given".
    if getattr(queues, "_consume_from", None) is not None:
        return  # the operator chose the queues with -Q; respect that choice
    for name in queues_to_consume(load_settings().database_url):
        queues.select_add(name)
