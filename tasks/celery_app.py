"""The Celery application shared by every TaskForge process.

``celery -A tasks.celery_app worker`` runs jobs; ``… beat`` drives the relay.
"""

from __future__ import annotations

from typing import Any

import kombu.pools
from celery import Celery, signals

from app.config import load_settings
from app.db import dispose_engines
from tasks.consumers import AUTOMATIC, WorkerScope, queues_to_consume

app = Celery("taskforge")
app.config_from_object("celeryconfig")
app.conf.include = ["tasks.executor", "tasks.maintenance", "tasks.lifecycle"]


def use_broker(url: str) -> None:
    """Point this process's Celery app at ``url`` when its settings name another broker.

    Every process normally reads the same ``REDIS_URL``, so this is a no-op; it
    matters where settings are built in code (tests, embedded servers).  Celery
    caches its connection and producer pools, so both are dropped here.
    """
    if app.conf.broker_url == url:
        return
    app.conf.broker_url = url
    # kombu keeps producer pools per connection in a process-wide registry that
    # would hand back a pool whose connections were closed: reset it all.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def _install_publisher() -> None:
    from tasks.dispatch import install

    settings = load_settings()
    install(settings.database_url, settings.redis_url)


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

    queues = instance.app.amqp.queues
    # kombu keeps the -Q selection in ``_consume_from``; None means "no -Q given".
    if getattr(queues, "_consume_from", None) is not None:
        return  # the operator chose the queues with -Q; respect that choice
    AUTOMATIC.set()
    for name in queues_to_consume(load_settings().database_url, WorkerScope.from_env()):
        queues.select_add(name)
