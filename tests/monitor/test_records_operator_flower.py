"""Task records, task types, the operator role and the Flower-compatible API, fed by events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import update

from app.cli import main as cli
from app.config import Settings
from app.db import session_scope
from app.models import Job, Worker, WorkerStatus, WorkerType
from app.monitor.events import EventHandler
from app.monitor.lookups import Lookups
from app.services import task_records
from app.services.live_state import LiveState
from tests.conftest import PASSWORD, Account, Auth
from tests.support.monitor import api, create_queue, submit

SHARED = "celery@shared"


@pytest.fixture
def store(settings: Settings) -> Iterator[LiveState]:
    """The monitor store on the test Redis."""
    store = LiveState.from_url(settings.redis_url)
    yield store
    store.close()


@pytest.fixture
def handler(store: LiveState, settings: Settings) -> EventHandler:
    """An event handler writing to ``store``."""
    return EventHandler(store, Lookups(settings.database_url))


def run(
    handler: EventHandler, job: dict[str, Any], at: float, *, attempt: int = 0, host: str = SHARED
) -> None:
    """Feed one attempt's received/started/succeeded events."""
    base = {"uuid": f"{job['id']}:{attempt}", "hostname": host}
    handler({"type": "task-received", "timestamp": at, "name": "taskforge.run_job", **base})
    handler({"type": "task-started", "timestamp": at + 1, **base})
    handler(
        {"type": "task-succeeded", "timestamp": at + 3, "result": "'succeeded'", "runtime": 2.0}
        | base
    )


def finish(settings: Settings, job: dict[str, Any], **values: Any) -> None:
    """Give a job SQL values as its run would have (result, status)."""
    with session_scope(settings.database_url) as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job["id"])).values(**values))


def test_redaction_and_caps_are_applied_at_any_depth() -> None:
    payload = {
        "user": "ann",
        "Password": "hunter2",
        "nested": [{"api_key": "k", "apiKey": "k2", "ok": 1, "SESSION_ID": "s"}],
        "Authorization": "Bearer x",
    }
    assert task_records.capped(payload) == {
        "user": "ann",
        "Password": "[redacted]",
        "nested": [
            {"api_key": "[redacted]", "apiKey": "[redacted]", "ok": 1, "SESSION_ID": "[redacted]"}
        ],
        "Authorization": "[redacted]",
    }
    big = {"blob": "x" * 5000, "token": "t"}
    capped = task_records.capped(big)
    assert capped["truncated"] is True and capped["bytes"] > task_records.VALUE_CAP
    assert len(capped["preview"]) == task_records.VALUE_CAP and '"t"' not in capped["preview"]
    assert task_records.cap_tail("a" * 9000 + "END", 8192).endswith("END")
    assert len(task_records.cap_head("e" * 2000, 1024) or "") == 1025


def test_task_items_carry_the_jobs_record_redacted(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    handler: EventHandler,
    settings: Settings,
) -> None:
    job = submit(client, owner, queue, "echo", payload={"to": "ann", "secret": "s3"})
    finish(settings, job, result={"sent": True, "token": "abc"})
    run(handler, job, time.time() - 10)
    done, started, received = api(client, owner, "/monitor/tasks")["tasks"]
    assert done["payload"] == {"to": "ann", "secret": "[redacted]"}
    assert done["result"] == {"sent": True, "token": "[redacted]"}
    assert (done["max_attempts"], done["retries"], done["exception"], done["traceback"]) == (
        3, 0, None, None,
    )  # fmt: skip
    assert done["organization_id"] == owner.organization_id
    assert started["result"] is None and received["payload"] == done["payload"]


def test_a_failed_attempt_shows_its_exception_and_traceback(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    handler: EventHandler,
    settings: Settings,
) -> None:
    from app.models import AttemptStatus, JobAttempt

    job = submit(client, owner, queue, "fail", payload={"message": "boom"})
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "RuntimeError: boom"
    with session_scope(settings.database_url) as session:
        session.add(
            JobAttempt(
                job_id=uuid.UUID(job["id"]),
                number=1,
                status=AttemptStatus.FAILED,
                error="boom",
                traceback=trace,
            )
        )
    at = time.time()
    base = {"uuid": f"{job['id']}:0", "hostname": SHARED}
    handler({"type": "task-received", "timestamp": at, "name": "taskforge.run_job", **base})
    handler(
        {"type": "task-failed", "timestamp": at + 1, "exception": "RuntimeError('boom')"} | base
    )
    [failed] = api(client, owner, "/monitor/tasks", state="failed")["tasks"]
    assert failed["exception"] == "RuntimeError('boom')"
    assert failed["traceback"].endswith("RuntimeError: boom")
    assert len(failed["traceback"]) == task_records.TRACEBACK_CAP + 1


def test_task_types_count_states_and_runtime_percentiles(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    at = time.time() - 100
    for i in range(4):
        run(handler, submit(client, owner, queue, "echo"), at + i)
    run(handler, submit(client, owner, queue, "other"), at)
    types = api(client, owner, "/monitor/task-types")["task_types"]
    assert [(t["job_type"], t["queue"], t["runs"]) for t in types] == [
        ("echo", queue["name"], 4),
        ("other", queue["name"], 1),
    ]
    echo = types[0]
    assert echo["states"] == {"received": 4, "started": 4, "succeeded": 4}
    assert (echo["runtime_p50"], echo["runtime_p95"]) == (2.0, 2.0)


def test_the_operator_sees_every_tenant_and_others_see_only_their_own(
    client: FlaskClient,
    owner: Account,
    auth: Auth,
    queue: dict[str, Any],
    handler: EventHandler,
    operator: Account,
) -> None:
    other = auth.register("Other")
    theirs = create_queue(client, other, "theirs")
    run(handler, submit(client, owner, queue, "echo"), time.time() - 5)
    run(handler, submit(client, other, theirs, "echo"), time.time() - 4)
    seen = api(client, operator, "/monitor/tasks")["tasks"]
    assert {t["organization_id"] for t in seen} == {owner.organization_id, other.organization_id}
    assert {t["organization_id"] for t in api(client, owner, "/monitor/tasks")["tasks"]} == {
        owner.organization_id
    }
    assert {q["queue_id"] for q in api(client, operator, "/monitor/queues")["queues"]} >= {
        queue["id"],
        theirs["id"],
    }
    assert [q["queue_id"] for q in api(client, other, "/monitor/queues")["queues"]] == [
        theirs["id"]
    ]


def shared_worker(settings: Settings, store: LiveState, queues: list[str]) -> None:
    """A self-registered shared platform worker, live in the monitor."""
    with session_scope(settings.database_url) as session:
        session.add(
            Worker(
                hostname=SHARED,
                name=SHARED,
                organization_id=None,
                worker_type=WorkerType.GENERAL,
                status=WorkerStatus.ONLINE,
                queues=queues,
                job_types=["echo"],
                capabilities={},
                max_concurrent_jobs=4,
            )
        )
    store.set_registry(Lookups(settings.database_url).registered_workers())
    store.update_worker(
        SHARED,
        {
            "status": "online",
            "last_heartbeat": repr(time.time()),
            "freq": "2.0",
            "queues": queues,
            "pid": "42",
            "pool": {
                "implementation": "celery.concurrency.prefork:TaskPool",
                "max-concurrency": 4,
                "processes": [1, 2, 3, 4],
                "max-tasks-per-child": "N/A",
            },
            "prefetch_count": 16,
            "rusage": {"utime": 1.5, "maxrss": 1024},
            "registered": ["taskforge.run_job"],
        },
    )


def test_only_an_operator_controls_a_shared_worker(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    store: LiveState,
    settings: Settings,
    operator: Account,
) -> None:
    shared_worker(settings, store, [f"tf.{queue['id']}"])
    for action, body in (("pool", {"action": "grow"}), ("drain", None)):
        refused = client.post(
            f"/api/v1/monitor/workers/{SHARED}/{action}", json=body, headers=owner.headers
        )
        assert refused.status_code == 404, refused.json
    drained = client.post(f"/api/v1/monitor/workers/{SHARED}/drain", headers=operator.headers)
    assert drained.status_code == 202, drained.json
    assert (drained.json["status"], drained.json["drain_mode"]) == ("draining", True)
    again = client.post(f"/api/v1/monitor/workers/{SHARED}/drain", headers=operator.headers)
    assert again.status_code == 202

    store.set_registry(Lookups(settings.database_url).registered_workers())
    [full] = api(client, operator, "/monitor/workers")["workers"]
    assert full["job_types"] == ["echo"] and full["id"] is not None
    assert full["registered_tasks"] == ["taskforge.run_job"]
    assert full["pool"] == {
        "implementation": "celery.concurrency.prefork:TaskPool",
        "max_concurrency": 4,
        "processes": 4,
        "max_tasks_per_child": "N/A",
    }
    assert (full["prefetch_count"], full["rusage"]["utime"]) == (16, 1.5)
    [scoped] = api(client, owner, "/monitor/workers")["workers"]
    assert (scoped["id"], scoped["job_types"], scoped["prefetch_count"]) == (None, None, 16)


def test_an_api_key_of_an_operator_is_no_operator(
    client: FlaskClient,
    operator: Account,
    auth: Auth,
    queue: dict[str, Any],
    handler: EventHandler,
    owner: Account,
) -> None:
    run(handler, submit(client, owner, queue, "echo"), time.time() - 5)
    made = client.post(
        "/api/v1/api-keys", json={"name": "ops", "scopes": ["job:read"]}, headers=operator.headers
    )
    assert made.status_code == 201, made.json
    key = {"X-API-Key": made.json["key"]}
    assert client.get("/api/v1/monitor/tasks", headers=key).json["tasks"] == []
    assert len(api(client, operator, "/monitor/tasks")["tasks"]) == 3


def flower(client: FlaskClient, account: Account, path: str, **query: Any) -> Any:
    """GET a Flower API path as ``account``."""
    return client.get(f"/api/v1/flower/api/{path}", query_string=query, headers=account.headers)


def test_the_flower_api_answers_in_flowers_shapes_scoped(
    client: FlaskClient,
    owner: Account,
    auth: Auth,
    queue: dict[str, Any],
    handler: EventHandler,
    store: LiveState,
    settings: Settings,
) -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
    first = submit(client, owner, queue, "echo", payload={"args": [1, 2], "kwargs": {"x": 1}})
    second = submit(client, owner, queue, "other", payload={"password": "p"})
    shared_worker(settings, store, [f"tf.{queue['id']}"])
    finish(settings, first, result=3)
    run(handler, first, at)
    run(handler, second, at + 120)

    tasks = flower(client, owner, "tasks").json
    first_id, second_id = f"{first['id']}:0", f"{second['id']}:0"
    assert list(tasks) == [second_id, first_id]
    task = tasks[first_id]
    assert (task["uuid"], task["name"], task["state"], task["worker"]) == (
        first_id, "echo", "SUCCESS", SHARED,
    )  # fmt: skip
    assert (task["args"], task["kwargs"], task["result"]) == ("[1, 2]", '{"x": 1}', "3")
    assert (task["received"], task["started"], task["succeeded"]) == (at, at + 1, at + 3)
    assert (task["runtime"], task["retries"], task["routing_key"]) == (2.0, 0, f"tf.{queue['id']}")
    assert tasks[second_id]["args"] == '[{"password": "[redacted]"}]'

    def ids(**query: Any) -> list[str]:
        response = flower(client, owner, "tasks", **query)
        assert response.status_code == 200, response.json
        return list(response.json)

    assert ids(taskname="echo") == [first_id]
    assert ids(limit=1, offset=1) == [first_id]
    assert ids(sort_by="received") == [first_id, second_id]
    assert ids(sort_by="-name") == [second_id, first_id]
    assert ids(state="SUCCESS", workername=SHARED) == [second_id, first_id]
    assert ids(state="FAILURE") == [] and ids(workername="nobody") == []
    assert ids(received_start="2026-12-01 12:01") == [second_id]
    assert ids(received_end="2026-12-01 12:01") == [first_id]
    assert len(ids(received_start="", received_end="")) == 2, "empty: no bound, as in Flower"
    assert flower(client, owner, "tasks", received_start="yesterday").status_code == 400
    assert flower(client, owner, "tasks", sort_by="color").status_code == 400
    assert flower(client, owner, "tasks", limit=0).status_code == 400

    info = flower(client, owner, f"task/info/{first_id}")
    assert info.status_code == 200
    assert info.json["task-id"] == first_id and "uuid" not in info.json
    assert info.json["state"] == "SUCCESS"

    workers = flower(client, owner, "workers").json
    assert list(workers) == [SHARED]
    assert workers[SHARED]["stats"]["prefetch_count"] == 16
    assert workers[SHARED]["registered"] == [], "a tenant sees no tasks of a shared worker"
    assert workers[SHARED]["stats"]["pool"]["max-concurrency"] == 4
    assert workers[SHARED]["active_queues"] == [
        {"name": f"tf.{queue['id']}", "routing_key": f"tf.{queue['id']}"}
    ]
    assert flower(client, owner, "workers", status="true").json == {SHARED: True}
    assert flower(client, owner, "workers", workername="x@y").status_code == 404

    lengths = flower(client, owner, "queues/length").json
    assert lengths == {
        "active_queues": [
            {
                "name": f"tf.{queue['id']}",
                "messages": 2,
                "queue": queue["name"],
                "queue_id": queue["id"],
            }
        ]
    }

    stranger = auth.register("Stranger")
    assert flower(client, stranger, "tasks").json == {}
    assert flower(client, stranger, f"task/info/{first_id}").status_code == 404
    assert flower(client, stranger, "workers").json == {}
    assert flower(client, stranger, "queues/length").json == {"active_queues": []}
    assert flower(client, owner, "task/info/not-a-task").status_code == 404
    assert client.get("/api/v1/flower/api/tasks").status_code == 401


def test_the_flower_api_is_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    for path in (
        "/api/v1/flower/api/workers",
        "/api/v1/flower/api/tasks",
        "/api/v1/flower/api/task/info/{task_id}",
        "/api/v1/flower/api/queues/length",
    ):
        assert "get" in paths[path], path


def test_operator_create_refuses_a_taken_email_or_a_weak_password(
    operator: Account, settings: Settings
) -> None:
    env = {"DATABASE_URL": settings.database_url, "TASKFORGE_OPERATOR_PASSWORD": PASSWORD}
    taken = CliRunner().invoke(cli, ["operator", "create", "--email", operator.email], env=env)
    assert taken.exit_code == 1 and "already exists" in taken.output
    weak = CliRunner().invoke(
        cli,
        ["operator", "create", "--email", "new-ops@example.com"],
        env={**env, "TASKFORGE_OPERATOR_PASSWORD": "x"},
    )
    assert weak.exit_code == 1 and "password" in weak.output


def test_a_state_flower_does_not_know_keeps_its_own_name() -> None:
    from app.services.flower_view import celery_state

    assert (celery_state("failed"), celery_state("cancelled")) == ("FAILURE", "CANCELLED")
