"""A real worker sends its task events in batches, and every event still arrives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from celery.events.receiver import EventReceiver
from flask.testing import FlaskClient
from kombu import Connection

from app.config import Settings
from tasks.celery_app import app as celery_app
from tests.conftest import Account
from tests.support.monitor import api
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

JOBS = 30
STATES = ("task-received", "task-started", "task-succeeded")


class CountingReceiver(EventReceiver):
    """A Celery event receiver that also counts the messages the events came in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task_messages = 0

    def _receive(self, body: Any, message: Any, **kwargs: Any) -> None:
        events = body if isinstance(body, list) else [body]
        if any(str(event.get("type", "")).startswith("task-") for event in events):
            self.task_messages += 1
        super()._receive(body, message)


def test_task_events_travel_in_batches_and_none_is_lost(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker()
    events: list[dict[str, Any]] = []
    with Connection(settings.redis_url) as connection:
        receiver = CountingReceiver(
            connection, handlers={"*": events.append}, app=celery_app, queue_prefix="test-batch"
        )
        ready = threading.Event()
        original_ready = receiver.on_consume_ready

        def on_ready(*args: Any, **kwargs: Any) -> None:
            original_ready(*args, **kwargs)
            ready.set()

        receiver.on_consume_ready = on_ready
        thread = threading.Thread(
            target=receiver.capture, kwargs={"wakeup": False}, name="events", daemon=True
        )
        thread.start()
        try:
            wait_for(ready.is_set, 15, "the event receiver never started")
            jobs = [
                {"queue_id": queue["id"], "job_type": "echo", "payload": n} for n in range(JOBS)
            ]
            response = client.post("/api/v1/jobs/batch", json={"jobs": jobs}, headers=owner.headers)
            assert response.status_code == 201, response.json
            ids = {job["id"] for job in response.json["jobs"]}

            def seen() -> list[tuple[str, str]]:
                return [
                    (str(e["uuid"]).split(":")[0], str(e["type"]))
                    for e in list(events)
                    if e.get("type") in STATES and str(e.get("uuid", "")).split(":")[0] in ids
                ]

            wait_for(
                lambda: len(seen()) == JOBS * len(STATES),
                60,
                f"saw {len(seen())} of {JOBS * len(STATES)} events:\n{worker.log()[-3000:]}",
            )
        finally:
            receiver.should_stop = True
            thread.join(timeout=10)
    assert sorted(seen()) == sorted((job_id, state) for job_id in ids for state in STATES)
    statuses = {
        job["status"]
        for job in api(client, owner, "/jobs", queue_id=queue["id"], limit=100)["jobs"]
    }
    assert statuses == {"succeeded"}
    # Celery alone sends about one message per event when a few jobs are in flight;
    # a batch per 0.1 s carries many (the bound leaves room for a slow machine).
    assert receiver.task_messages * 3 <= JOBS * len(STATES), receiver.task_messages
