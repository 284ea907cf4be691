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

from app.redis_client import celery_transport_options

app = Celery("taskforge")
app.config_from_object("celeryconfig")
app.conf.include = [
    "tasks.worker",
    "tasks.executor",
    "tasks.maintenance",
    "tasks.lifecycle",
    "tasks.worker_commands",
]


def use_broker(url: str, sentinel_master: str | None = None) -> None:
    """Point this process's Celery app at ``url`` when its settings name another broker.

    Every process normally reads the same ``REDIS_URL``, so this is a no-op; it
    matters where settings are built in code (tests, embedded servers).  Celery
    caches its connection and producer pools, so both are dropped here.
    ``sentinel_master`` names the master when ``url`` names Sentinels.
    """
    transport_options = {
        **{k: v for k, v in app.conf.broker_transport_options.items() if k != "master_name"},
        **celery_transport_options(url, sentinel_master),
    }
    if app.conf.broker_url == url and app.conf.broker_transport_options == transport_options:
        return
    app.conf.broker_url = url
    app.conf.broker_transport_options = transport_options
    # kombu keeps producer pools per connection in a process-wide registry that
    # would hand back a pool whose connections were closed: reset it all.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
