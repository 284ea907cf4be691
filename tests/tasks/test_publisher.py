"""The Celery publisher behind the outbox: what it sends, and how a broker outage shows."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.broker import BrokerProbe
from app.celery_names import priority_step
from app.errors import Unavailable
from app.models import utcnow
from app.redis_server import RedisProcess, free_port
from app.services.outbox import Dispatch
from tasks.celery_app import app, use_broker
from tasks.publisher import CeleryPublisher


def _dispatch(queue_id: uuid.UUID, **fields: object) -> Dispatch:
    return Dispatch(uuid.uuid4(), queue_id, 0, 5, 60, **fields)  # type: ignore[arg-type]


def test_priority_nine_is_the_first_redis_step() -> None:
    assert [priority_step(p) for p in (9, 5, 0)] == [0, 4, 9]


def test_send_publishes_due_messages_to_the_jobs_queue(redis_server: RedisProcess) -> None:
    use_broker(redis_server.url)
    queue_id = uuid.uuid4()
    now = _dispatch(queue_id)
    soon = _dispatch(queue_id, eta=utcnow() + timedelta(seconds=30))
    later = _dispatch(queue_id, eta=utcnow() + timedelta(hours=1))
    sent = CeleryPublisher("sqlite://").send([now, soon, later])
    assert [item.job_id for item in sent] == [now.job_id, soon.job_id]
    assert sent[1].eta == soon.eta, "the held message keeps its ETA"
    assert BrokerProbe.from_url(redis_server.url).depth(f"tf.{queue_id}") == 2


def test_the_broker_probe_counts_every_priority_step_as_kombu_names_it(
    redis_server: RedisProcess,
) -> None:
    use_broker(redis_server.url)
    queue_id = uuid.uuid4()
    items = [Dispatch(uuid.uuid4(), queue_id, 0, priority, 60) for priority in range(10)]
    assert len(CeleryPublisher("sqlite://").send(items)) == 10
    with app.connection_for_read() as connection:
        declared = connection.default_channel.queue_declare(f"tf.{queue_id}", passive=True)
    assert declared.message_count == 10
    assert BrokerProbe.from_url(redis_server.url).depth(f"tf.{queue_id}") == 10


def test_a_broker_outage_is_unavailable_to_the_core(redis_server: RedisProcess) -> None:
    use_broker(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(Unavailable):
            CeleryPublisher("sqlite://").send([_dispatch(uuid.uuid4())])
    finally:
        use_broker(redis_server.url)
