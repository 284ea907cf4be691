"""Flower parity against a real prefork worker and the real monitor process.

Task records, worker facts, the Flower API and the taskforge_* Flower metrics as
a real run fills them; the operator drains a shared worker, which then consumes
no TaskForge queue.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import METRICS_AUTH, Account
from tests.support.monitor import MonitorProcess, Start, api, create_queue, submit
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

HOST = f"parity@{socket.gethostname()}"


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """Run ``promtool check metrics`` (Prometheus' own linter) on a scrape."""
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool is missing (.ci/run installs it from Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def task_states(client: FlaskClient, account: Account) -> dict[str, list[str]]:
    """Job id → the states the monitor saw, oldest first."""
    seen: dict[str, list[str]] = {}
    for item in reversed(api(client, account, "/monitor/tasks", limit=500)["tasks"]):
        seen.setdefault(item["job_id"], []).append(item["state"])
    return seen


def consumed(celery: Celery) -> list[str] | None:
    """The queues the worker consumes, per ``inspect active_queues``."""
    replies = celery.control.inspect(destination=[HOST], timeout=2).active_queues() or {}
    return sorted(q["name"] for q in replies[HOST]) if HOST in replies else None


def test_a_real_run_fills_records_facts_flower_api_and_metrics(
    client: FlaskClient,
    owner: Account,
    operator: Account,
    start_monitor: Callable[[], MonitorProcess],
    start_worker: Start,
    celery_control: Celery,
) -> None:
    queue = create_queue(client, owner, "parity")
    monitor = start_monitor()
    worker = start_worker("-c", "2", "-n", "parity@%h")

    def logs() -> str:
        return f"{worker.log()[-2000:]}\n{monitor.log()[-2000:]}"

    def live() -> dict[str, Any] | None:
        found = api(client, owner, "/monitor/workers")["workers"]
        mine = [w for w in found if w["hostname"] == HOST and w["prefetch_count"]]
        return mine[0] if mine else None

    wait_for(live, 30, f"worker facts never arrived:\n{logs()}")
    ok = submit(client, owner, queue, "echo", payload={"msg": "hi", "api_key": "k"})
    bad = submit(client, owner, queue, "fail", payload={"message": "boom"}, max_attempts=1)
    wait_for(
        lambda: (
            task_states(client, owner).get(ok["id"], [])[-1:] == ["succeeded"]
            and task_states(client, owner).get(bad["id"], [])[-1:] == ["failed"]
        ),
        30,
        f"saw {task_states(client, owner)}:\n{logs()}",
    )

    done = api(client, owner, "/monitor/tasks", state="succeeded")["tasks"][0]
    assert done["payload"] == {"msg": "hi", "api_key": "[redacted]"}
    assert done["result"] is not None and done["runtime"] >= 0
    failed = api(client, owner, "/monitor/tasks", state="failed")["tasks"][0]
    assert "boom" in failed["exception"] and "boom" in (failed["traceback"] or "")

    facts = live()
    assert facts is not None
    assert "prefork" in facts["pool"]["implementation"].lower()
    assert facts["pool"]["processes"] == 2 and facts["pool"]["max_concurrency"] == 2
    assert facts["prefetch_count"] >= 2 and "utime" in facts["rusage"]
    assert facts["job_types"] is None, "a tenant sees no registered types of a shared worker"

    def operators_view() -> dict[str, Any]:
        [full] = [
            w for w in api(client, operator, "/monitor/workers")["workers"] if w["hostname"] == HOST
        ]
        return full

    # The monitor re-reads the workers' SQL rows every two seconds
    # (app/monitor/refresh.py): a run this short can finish before its first read.
    wait_for(
        lambda: operators_view()["job_types"] is not None,
        10,
        f"the monitor never read the worker's SQL row:\n{logs()}",
    )
    full = operators_view()
    assert {"echo", "fail"} <= set(full["job_types"])
    assert "taskforge.run_job" in full["registered_tasks"] and facts["registered_tasks"] is None

    types = {t["job_type"]: t for t in api(client, owner, "/monitor/task-types")["task_types"]}
    assert types["echo"]["states"]["succeeded"] == 1 and types["echo"]["runtime_p50"] is not None
    assert types["fail"]["states"]["failed"] == 1

    flower = client.get("/api/v1/flower/api/tasks", headers=owner.headers).json
    assert {t["state"] for t in flower.values()} == {"SUCCESS", "FAILURE"}
    assert flower[f"{ok['id']}:0"]["worker"] == HOST
    info = client.get(f"/api/v1/flower/api/task/info/{bad['id']}:0", headers=owner.headers).json
    assert info["state"] == "FAILURE" and "boom" in info["traceback"]
    workers = client.get("/api/v1/flower/api/workers", headers=owner.headers).json
    assert workers[HOST]["stats"]["pool"]["max-concurrency"] == 2
    lengths = client.get("/api/v1/flower/api/queues/length", headers=owner.headers).json
    assert lengths["active_queues"][0]["messages"] == 0

    text = client.get("/api/v1/metrics", headers=METRICS_AUTH).get_data(as_text=True)
    samples = {
        (s.name, s.labels.get("type"), s.labels.get("job_type"), s.labels.get("queue")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("taskforge_events_total", "task-succeeded", "echo", "parity")] == 1
    assert samples[("taskforge_task_runtime_seconds_count", None, "echo", "parity")] == 1
    assert ("taskforge_task_prefetch_time_seconds", None, "echo", "parity") in samples
    key = ("taskforge_worker_number_of_currently_executing_tasks", None, "fail", "parity")
    assert samples[key] == 0

    def worker_events() -> set[str]:
        text = client.get("/api/v1/metrics", headers=METRICS_AUTH).get_data(as_text=True)
        return {
            s.labels["type"]
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "taskforge_events_total" and s.labels["job_type"] == ""
        }

    wait_for(lambda: "worker-heartbeat" in worker_events(), 15, f"{worker_events()}")
    assert "worker-online" in worker_events()

    scrape = client.get("/api/v1/metrics", headers=METRICS_AUTH).get_data(as_text=True)
    checked = promtool_check(scrape)
    assert checked.returncode == 0, f"promtool: {checked.stdout}{checked.stderr}"


def test_the_operator_grows_and_drains_a_shared_worker(
    client: FlaskClient,
    owner: Account,
    operator: Account,
    start_monitor: Callable[[], MonitorProcess],
    start_worker: Start,
    celery_control: Celery,
) -> None:
    queue = create_queue(client, owner, "drained")
    start_monitor()
    worker = start_worker("-c", "1", "-n", "parity@%h")
    wait_for(
        lambda: f"tf.{queue['id']}" in (consumed(celery_control) or []),
        30,
        f"the queue is never consumed:\n{worker.log()[-2000:]}",
    )
    path = f"/api/v1/monitor/workers/{HOST}"
    assert (
        client.post(f"{path}/pool", json={"action": "grow"}, headers=owner.headers).status_code
        == 404
    )
    assert client.post(f"{path}/drain", headers=owner.headers).status_code == 404
    grown = client.post(f"{path}/pool", json={"action": "grow"}, headers=operator.headers)
    assert grown.status_code == 202 and grown.json["reply"] == {"ok": "pool will grow"}
    drained = client.post(f"{path}/drain", headers=operator.headers)
    assert drained.status_code == 202 and drained.json["drain_mode"] is True

    def own_queues() -> list[str] | None:
        queues = consumed(celery_control)
        return None if queues is None else [q for q in queues if q.startswith("tf.")]

    wait_for(
        lambda: own_queues() == [],
        30,
        f"still consuming {consumed(celery_control)}:\n{worker.log()[-2000:]}",
    )
