"""Real Celery workers: self-registration, heartbeats, offline detection, drain, worker types."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from celery import Celery
from flask.testing import FlaskClient

from app.config import Settings
from tasks import publisher
from tests.conftest import Account, Auth
from tests.support.execution import mark_silent_workers_offline
from tests.support.monitor import (
    MonitorProcess,
    Start,
    api,
    create_queue,
    job_status,
    ran_on,
    submit,
    wait_registered,
)
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Env = Callable[..., None]


def _consumed(celery: Celery, hostname: str) -> list[str] | None:
    replies = celery.control.inspect(destination=[hostname], timeout=2).active_queues() or {}
    if hostname not in replies:
        return None
    return sorted(q["name"] for q in replies[hostname])


def test_a_worker_registers_itself_and_heartbeats(
    client: FlaskClient, owner: Account, worker_env: Env, start_worker: Start
) -> None:
    queue = create_queue(client, owner, "io-work", worker_type="specialized_io")
    worker_env(
        worker_organization=owner.organization_id,
        worker_type="specialized_io",
        worker_capabilities=json.dumps({"disks": ["ssd"]}),
        heartbeat_seconds="1",
    )
    worker = start_worker("-c", "2", "-n", "io@%h")
    row = wait_registered(client, owner, "io@", worker)
    assert row["hostname"] == f"io@{socket.gethostname()}"
    assert row["name"] == row["hostname"]
    assert row["status"] == "online"
    assert row["worker_type"] == "specialized_io"
    assert row["capabilities"] == {"disks": ["ssd"]}
    assert row["max_concurrent_jobs"] == 2
    assert f"tf.{queue['id']}" in row["queues"]
    first = datetime.fromisoformat(row["last_heartbeat"])

    def beat_again() -> bool:
        now = api(client, owner, f"/workers/{row['id']}")
        return datetime.fromisoformat(now["last_heartbeat"]) > first and now["metadata"] == {
            "active_jobs": 0,
            "problems": [],
        }

    wait_for(beat_again, 10, f"no second heartbeat:\n{worker.log()[-3000:]}")
    worker.stop()
    assert api(client, owner, f"/workers/{row['id']}")["status"] == "offline"


def test_a_killed_worker_goes_offline(
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    worker_env: Env,
    start_worker: Start,
    start_monitor: Callable[[], MonitorProcess],
) -> None:
    start_monitor()
    create_queue(client, owner, "doomed")
    worker_env(worker_organization=owner.organization_id, heartbeat_seconds="1")
    worker = start_worker("-P", "solo", "-n", "doomed@%h")
    row = wait_registered(client, owner, "doomed@", worker)

    def live_status() -> str | None:
        for live in api(client, owner, "/monitor/workers")["workers"]:
            if live["hostname"] == row["hostname"]:
                return str(live["status"])
        return None

    wait_for(lambda: live_status() == "online", 15, "the monitor never saw the worker")
    assert mark_silent_workers_offline(settings.database_url, heartbeat_seconds=1) == 0
    worker.process.kill()
    worker.process.wait(10)
    wait_for(
        lambda: mark_silent_workers_offline(settings.database_url, heartbeat_seconds=1) == 1,
        10,
        "the killed worker was never swept offline",
    )
    assert api(client, owner, f"/workers/{row['id']}")["status"] == "offline"
    wait_for(lambda: live_status() == "offline", 15, "the monitor still shows it online")


def test_drain_finishes_the_running_job_then_consumes_nothing(
    client: FlaskClient,
    owner: Account,
    worker_env: Env,
    start_worker: Start,
    celery_control: Celery,
) -> None:
    queue = create_queue(client, owner, "drained")
    worker_env(worker_organization=owner.organization_id, heartbeat_seconds="1")
    worker = start_worker("-c", "2", "-n", "drainme@%h")
    row = wait_registered(client, owner, "drainme@", worker)
    host = row["hostname"]
    running = submit(client, owner, queue, "sleep", payload={"seconds": 3})
    wait_for(lambda: job_status(client, owner, running) == "processing", 15, worker.log())

    response = client.post(f"/api/v1/workers/{row['id']}/drain", headers=owner.headers)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "draining"
    wait_for(lambda: _consumed(celery_control, host) == [], 15, "consumers were not cancelled")
    late = submit(client, owner, queue, "echo", payload="late")
    # A queue created now is broadcast to every worker; the drained one must ignore it.
    newer = create_queue(client, owner, "created-after-drain")
    late_new = submit(client, owner, newer, "echo", payload="late")

    wait_for(lambda: job_status(client, owner, running) == "succeeded", 20, worker.log())
    assert ran_on(client, owner, running) == host
    wait_for(
        lambda: api(client, owner, f"/workers/{row['id']}")["status"] == "offline",
        15,
        f"the drained worker never went offline:\n{worker.log()[-3000:]}",
    )
    assert _consumed(celery_control, host) == []
    assert worker.process.poll() is None  # it stays idle, offline
    assert job_status(client, owner, late) == "pending"
    assert job_status(client, owner, late_new) == "pending"

    fresh = start_worker("-P", "solo", "-n", "fresh@%h")
    for job in (late, late_new):
        wait_for(lambda job=job: job_status(client, owner, job) == "succeeded", 20, fresh.log())
        assert ran_on(client, owner, job) == f"fresh@{socket.gethostname()}"


def test_with_drain_shutdown_a_drained_worker_exits(
    client: FlaskClient, owner: Account, worker_env: Env, start_worker: Start
) -> None:
    create_queue(client, owner, "bye")
    worker_env(worker_organization=owner.organization_id, heartbeat_seconds="1", drain_shutdown="1")
    worker = start_worker("-P", "solo", "-n", "bye@%h")
    row = wait_registered(client, owner, "bye@", worker)
    assert (
        client.post(f"/api/v1/workers/{row['id']}/drain", headers=owner.headers).status_code == 202
    )
    assert worker.process.wait(20) == 0
    assert api(client, owner, f"/workers/{row['id']}")["status"] == "offline"


def test_a_worker_of_the_wrong_type_does_not_consume(
    client: FlaskClient,
    owner: Account,
    worker_env: Env,
    start_worker: Start,
    celery_control: Celery,
) -> None:
    gpu_queue = create_queue(client, owner, "gpu-only", worker_type="specialized_gpu")
    general = start_worker("-P", "solo", "-n", "general@%h")
    general_host = f"general@{socket.gethostname()}"
    job = submit(client, owner, gpu_queue, "echo", payload=1)
    consumed = _consumed(celery_control, general_host)
    assert consumed is not None and f"tf.{gpu_queue['id']}" not in consumed
    assert job_status(client, owner, job) == "pending"

    worker_env(worker_type="specialized_gpu")
    gpu = start_worker("-P", "solo", "-n", "gpu@%h")
    wait_for(lambda: job_status(client, owner, job) == "succeeded", 20, gpu.log())
    assert ran_on(client, owner, job) == f"gpu@{socket.gethostname()}"
    assert general.process.poll() is None


def test_a_queue_whose_broadcast_was_missed_is_consumed_within_a_heartbeat(
    client: FlaskClient,
    owner: Account,
    worker_env: Env,
    start_worker: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker_env(heartbeat_seconds="1")
    worker = start_worker("-P", "solo", "-n", "deaf@%h")
    # The broadcast goes nowhere, as when Redis is down or the worker not yet listening.
    monkeypatch.setattr(publisher, "broadcast_consume", lambda _items: None)
    queue = create_queue(client, owner, "unheard")
    jobs = [submit(client, owner, queue, "echo", payload=i) for i in range(5)]
    for job in jobs:
        wait_for(
            lambda job=job: job_status(client, owner, job) == "succeeded",
            20,
            f"the new queue was never consumed:\n{worker.log()[-3000:]}",
        )


def test_workers_converge_on_sql_but_a_q_selection_stays_as_chosen(
    client: FlaskClient,
    owner: Account,
    worker_env: Env,
    start_worker: Start,
    celery_control: Celery,
) -> None:
    worker_env(heartbeat_seconds="1")
    start_worker("-P", "solo", "-n", "auto@%h")
    start_worker("-P", "solo", "-n", "chosen@%h", "-Q", "taskforge.internal")
    auto, chosen = (f"{name}@{socket.gethostname()}" for name in ("auto", "chosen"))
    queue = create_queue(client, owner, "short-lived")
    name = f"tf.{queue['id']}"
    wait_for(lambda: name in (_consumed(celery_control, auto) or []), 15, "never consumed")
    response = client.delete(f"/api/v1/queues/{queue['id']}", headers=owner.headers)
    assert response.status_code == 204, response.json
    wait_for(
        lambda: name not in (_consumed(celery_control, auto) or [name]),
        15,
        "a deleted queue is still consumed",
    )
    consumed = _consumed(celery_control, chosen)
    assert consumed is not None
    assert [q for q in consumed if q.startswith("tf.")] == [], "-Q was overridden"


def test_pool_control_reaches_only_the_organizations_own_worker(
    client: FlaskClient, owner: Account, auth: Auth, worker_env: Env, start_worker: Start
) -> None:
    create_queue(client, owner, "pooled")
    worker_env(worker_organization=owner.organization_id, heartbeat_seconds="1")
    worker = start_worker("-c", "1", "-n", "pool@%h")
    host = wait_registered(client, owner, "pool@", worker)["hostname"]

    def pool(account: Account, hostname: str, **body: Any) -> Any:
        return client.post(
            f"/api/v1/monitor/workers/{hostname}/pool", json=body, headers=account.headers
        )

    grown = pool(owner, host, action="grow", n=1)
    assert grown.status_code == 202, grown.json
    assert grown.json == {
        "hostname": host,
        "action": "grow",
        "n": 1,
        "reply": {"ok": "pool will grow"},
    }
    assert pool(owner, host, action="shrink", n=1).json["reply"] == {"ok": "pool will shrink"}
    assert pool(owner, host, action="restart").json["reply"] == {"ok": "reload started"}

    viewer = auth.member(owner, "viewer")
    assert pool(viewer, host, action="grow").status_code == 403
    stranger = auth.register("Other")
    assert pool(stranger, host, action="grow").status_code == 404
    assert pool(owner, "nobody@nowhere", action="grow").status_code == 404
    assert pool(owner, host, action="explode").status_code == 400
    assert pool(owner, host, action="grow", n=17).status_code == 400
