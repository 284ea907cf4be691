"""The event iterator: parses task and worker events and opens a new stream when one ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask import Flask

import taskforge_client as tfc
from app.api.app import create_app
from app.config import Settings
from app.services.live_state import LiveState
from tests.client.conftest import Signup
from tests.support.workers import wait_for


@pytest.fixture
def short_streams(settings: Settings) -> Flask:
    """An app whose event streams end after 2 s (keepalive every second)."""
    return create_app(settings.replace(sse_max_seconds=2, sse_keepalive_seconds=1))


@pytest.fixture
def store(settings: Settings) -> Iterator[LiveState]:
    """The monitor's store on the test Redis, to publish events as the monitor does."""
    store = LiveState.from_url(settings.redis_url)
    yield store
    store.close()


def task(job_id: str) -> dict[str, object]:
    """A task item as the monitor publishes it."""
    return {
        "job_id": job_id,
        "queue_id": "q",
        "job_type": "echo",
        "state": "succeeded",
        "worker": "w@h",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "runtime": 0.25,
        "error": None,
        "attempt": 1,
    }


def test_events_survive_the_end_of_a_stream(
    short_streams: Flask, store: LiveState, signup: Callable[..., Signup]
) -> None:
    owner = signup("http://testserver", http_transport=httpx.WSGITransport(app=short_streams))
    connects: list[int] = []
    received: list[tfc.Event] = []

    def read() -> None:
        for event in owner.client.events(on_connect=lambda: connects.append(len(received))):
            received.append(event)
            if len(received) == 3:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    org = owner.organization_id
    wait_for(lambda: connects, 10, "the first stream never opened")
    store.publish(org, "task", task("first"))
    store.publish(org, "worker", {"hostname": "w@h", "status": "online", "active": 1})
    wait_for(lambda: len(connects) >= 2, 15, "no second stream after the first ended")
    store.publish(org, "task", task("second"))
    reader.join(15)
    first, worker, second = received
    assert isinstance(first, tfc.TaskEvent) and first.job_id == "first"
    assert first.runtime == 0.25 and first.timestamp.year == 2026
    assert isinstance(worker, tfc.LiveWorker) and worker.active == 1
    assert isinstance(second, tfc.TaskEvent) and second.job_id == "second"


def test_follow_falls_back_to_polling_when_no_stream_can_be_had(
    settings: Settings, signup: Callable[..., Signup]
) -> None:
    one_stream = create_app(
        settings.replace(sse_max_streams=1, sse_max_seconds=2, sse_keepalive_seconds=1)
    )
    transport = httpx.WSGITransport(app=one_stream)
    owner = signup("http://testserver", http_transport=transport, retry=tfc.RetryPolicy(1))
    tf = owner.client
    queue = tf.queues.create("polled")
    tf.queues.pause(queue)
    job = tf.jobs.submit(queue, "echo", 1)
    with tf.event_feed() as holder:  # takes the only stream slot
        assert holder.wait_connected(10)
        following = tf.jobs.follow(job, timeout=30, poll=0.2)
        assert next(following).status is tfc.JobStatus.PENDING
        tf.jobs.cancel(job)
        rest = list(following)
    assert isinstance(rest[-1], tfc.Job) and rest[-1].status is tfc.JobStatus.CANCELLED
