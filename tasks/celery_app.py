"""The Celery application every TaskForge process shares.

``celery -A tasks.celery_app worker`` runs jobs; ``… beat`` sends the periodic
tasks.  The API, gRPC and the monitor use the same app to publish, to control
workers and to receive events.  Importing this module starts nothing: a worker
or beat imports the modules in ``include`` as it starts, and ``tasks.worker``
builds the process's runtime then.
"""

from __future__ import annotations

import kombu.pools
from celery import Celery

app = Celery("taskforge")
app.config_from_object("celeryconfig")
app.conf.include = [
    "tasks.worker",
    "tasks.executor",
    "tasks.maintenance",
    "tasks.lifecycle",
    "tasks.worker_commands",
]


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
