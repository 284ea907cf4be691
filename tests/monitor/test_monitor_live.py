"""The monitor process against a real Celery worker: tasks, workers, queues, metrics, SSE."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.app import create_app
from app.config import Settings
from tests.conftest import METRICS_AUTH, Account, Auth
from tests.support.monitor import MonitorProcess, Start, api, create_queue, submit
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

HOST = f"live@{socket.gethostname()}"


def states(client: FlaskClient, account: Account, job: dict[str, Any]) -> list[str]:
    """The states the monitor saw for ``job``, oldest first."""
    tasks = api(client, account, "/monitor/tasks", limit=500)["tasks"]
    return [t["state"] for t in reversed(tasks) if t["job_id"] == job["id"]]


def live_worker(client: FlaskClient, account: Account) -> dict[str, Any] | None:
    """The live view of the test worker, if the account sees it."""
    for worker in api(client, account, "/monitor/workers")["workers"]:
        if worker["hostname"] == HOST:
            return worker  # type: ignore[no-any-return]
    return None


def start_live(
    start_monitor: Callable[[], MonitorProcess], start_worker: Start
) -> tuple[MonitorProcess, WorkerProcess]:
    """The monitor, then a shared single-process worker."""
    return start_monitor(), start_worker("-P", "solo", "-n", "live@%h")


def test_jobs_show_up_with_their_state_changes(
    client: FlaskClient,
    owner: Account,
    auth: Auth,
    start_monitor: Callable[[], MonitorProcess],
    start_worker: Start,
) -> None:
    queue = create_queue(client, owner, "live", retry_backoff_seconds=0)
    monitor, worker = start_live(start_monitor, start_worker)
    logs = lambda: f"{worker.log()[-2000:]}\n{monitor.log()[-2000:]}"  # noqa: E731
    wait_for(lambda: live_worker(client, owner), 15, f"worker not in the live view:\n{logs()}")

    ok = submit(client, owner, queue, "echo", payload={"hello": "world"})
    bad = submit(client, owner, queue, "fail", payload={"message": "boom"}, max_attempts=2)
    wait_for(
        lambda: states(client, owner, ok) == ["received", "started", "succeeded"],
        20,
        f"saw {states(client, owner, ok)}:\n{logs()}",
    )
    wait_for(lambda: "failed" in states(client, owner, bad), 20, logs())
    assert states(client, owner, bad) == [
        "received", "started", "retried", "received", "started", "failed",
    ]  # fmt: skip
    failed = api(client, owner, "/monitor/tasks", state="failed")["tasks"]
    assert [(t["job_id"], t["error"], t["attempt"]) for t in failed] == [(bad["id"], "boom", 2)]
    done = api(client, owner, "/monitor/tasks", state="succeeded")["tasks"][0]
    assert done["worker"] == HOST and done["job_type"] == "echo" and done["runtime"] >= 0

    def settled() -> dict[str, Any] | None:
        seen = live_worker(client, owner)
        return seen if seen and seen["processed"] == 3 and seen["pool_size"] == 1 else None

    wait_for(settled, 15, f"counters never settled: {live_worker(client, owner)}")
    seen = settled()
    assert seen is not None
    assert (seen["status"], seen["active"], seen["failed"], seen["id"]) == ("online", 0, 2, None)
    assert seen["queues"] == [f"tf.{queue['id']}"]

    def drained_queue() -> bool:
        overview = api(client, owner, "/monitor/queues")["queues"][0]
        return (overview["consumers"], overview["depth"], overview["oldest_waiting_seconds"]) == (
            1,
            0,
            None,
        )

    wait_for(drained_queue, 15, f"queue view: {api(client, owner, '/monitor/queues')}")

    stranger = auth.register("Other")
    assert api(client, stranger, "/monitor/tasks")["tasks"] == []
    assert api(client, stranger, "/monitor/workers")["workers"] == []
    assert api(client, stranger, "/monitor/queues")["queues"] == []

    text = client.get("/api/v1/metrics", headers=METRICS_AUTH).get_data(as_text=True)
    samples = {
        (s.name, s.labels.get("queue")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("taskforge_jobs_succeeded_total", queue["id"])] == 1
    assert samples[("taskforge_jobs_retried_total", queue["id"])] == 1
    assert samples[("taskforge_jobs_failed_total", queue["id"])] == 1
    assert samples[("taskforge_job_run_seconds_count", queue["id"])] == 3


@pytest.fixture
def streaming_app(settings: Settings) -> Flask:
    """An app whose event streams last at most 20 seconds."""
    return create_app(settings.replace(sse_max_seconds=20, sse_keepalive_seconds=5))


def test_the_event_stream_carries_a_real_job(
    streaming_app: Flask,
    owner: Account,
    queue: dict[str, Any],
    start_monitor: Callable[[], MonitorProcess],
    start_worker: Start,
) -> None:
    client = streaming_app.test_client()
    start_live(start_monitor, start_worker)
    wait_for(lambda: live_worker(client, owner), 15, "worker not in the live view")
    issued = client.post("/api/v1/monitor/events/tickets", headers=owner.headers)
    assert issued.status_code == 201
    stream = client.get(
        "/api/v1/monitor/events", query_string={"ticket": issued.json["ticket"]}, buffered=False
    )
    try:
        assert stream.status_code == 200
        job = submit(client, owner, queue, "echo", payload=1)
        seen: list[str] = []
        for chunk in stream.response:
            frame = chunk.decode() if isinstance(chunk, bytes) else chunk
            if frame.startswith("event: task\n"):
                item = json.loads(frame.split("data: ", 1)[1])
                if item["job_id"] == job["id"]:
                    seen.append(item["state"])
                    if item["state"] == "succeeded":
                        break
        assert seen == ["received", "started", "succeeded"]
    finally:
        stream.close()
