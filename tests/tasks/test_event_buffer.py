"""The worker's consumer sends its buffered task events when its timer fires, not every 24."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.events import EventDispatcher
from kombu import Connection, Queue

from tasks.celery_app import app
from tasks.consumer import EVENT_BUFFER_LIMIT, EVENT_FLUSH_SECONDS, Consumer


@dataclass
class _Entry:
    callback: Callable[[], None]
    canceled: bool = False


@dataclass
class _Hub:
    """The part of kombu's event loop the consumer uses: timers, run by hand here."""

    later: list[tuple[float, _Entry]] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Entry:
        entry = _Entry(callback)
        self.later.append((delay, entry))
        return entry

    def fire(self) -> None:
        due, self.later = self.later, []
        for _, entry in due:
            if not entry.canceled:
                entry.callback()


@pytest.fixture
def connection() -> Iterator[Connection]:
    with Connection("memory://") as conn:
        yield conn


def _consumer(connection: Connection, hub: _Hub) -> Consumer:
    """A consumer with only what its event buffering uses: a hub and Celery's dispatcher."""
    consumer = Consumer.__new__(Consumer)
    consumer.hub = hub
    consumer._flush_entry = None
    # As Celery's Events bootstep makes it for a consumer with an event loop.
    consumer.event_dispatcher = EventDispatcher(
        connection,
        hostname="worker@test",
        app=app,
        buffer_group=["task"],
        on_send_buffered=consumer.on_send_event_buffered,
    )
    return consumer


def _messages(connection: Connection, queue: Queue) -> list[list[dict[str, Any]]]:
    bodies = []
    with connection.SimpleQueue(queue) as simple:
        while simple.qsize():
            message = simple.get(block=False)
            bodies.append(message.payload)
            message.ack()
    return bodies


def test_buffered_task_events_wait_for_the_timer_and_go_in_one_message(
    connection: Connection,
) -> None:
    hub = _Hub()
    consumer = _consumer(connection, hub)
    dispatcher = consumer.event_dispatcher
    queue = Queue("spy", exchange=dispatcher.exchange, routing_key="#")
    queue(connection.default_channel).declare()

    # Three events a job, for more jobs than Celery's limit of 24 events holds.
    for n in range(40):
        dispatcher.send("task-received", uuid=f"job-{n}:0", name="taskforge.run_job")
        dispatcher.send("task-started", uuid=f"job-{n}:0")
        dispatcher.send("task-succeeded", uuid=f"job-{n}:0", result="'succeeded'")

    assert _messages(connection, queue) == []
    assert [delay for delay, _ in hub.later] == [EVENT_FLUSH_SECONDS]
    hub.fire()
    [events] = _messages(connection, queue)
    assert len(events) == 120
    assert [event["type"] for event in events[:3]] == [
        "task-received",
        "task-started",
        "task-succeeded",
    ]
    assert dispatcher.buffer_limit == EVENT_BUFFER_LIMIT


def test_the_limit_still_bounds_what_one_message_carries(connection: Connection) -> None:
    hub = _Hub()
    consumer = _consumer(connection, hub)
    dispatcher = consumer.event_dispatcher
    queue = Queue("spy", exchange=dispatcher.exchange, routing_key="#")
    queue(connection.default_channel).declare()

    for n in range(EVENT_BUFFER_LIMIT + 5):
        dispatcher.send("task-started", uuid=f"job-{n}:0")

    assert [len(events) for events in _messages(connection, queue)] == [EVENT_BUFFER_LIMIT]
    hub.fire()
    assert [len(events) for events in _messages(connection, queue)] == [5]
