"""The monitor's event handling and the /monitor endpoints, fed with synthetic Celery events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from app.celery_names import parse_task_id
from app.config import Settings
from app.db import session_scope
from app.models import Job
from app.monitor.events import EventHandler
from app.monitor.lookups import LRU, Lookups
from app.services import live_view
from app.services.actors import Actor
from app.services.auth import actor_for_user_id
from app.services.execution import Outcome
from app.services.live_state import LiveState, is_alive
from tests.conftest import Account, Auth
from tests.support.monitor import api, create_queue, submit

HOST = "celery@shared"


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


def task_event(kind: str, job: dict[str, Any], at: float, **fields: Any) -> dict[str, Any]:
    """A Celery task event for attempt 1 of ``job``."""
    return {
        "type": kind,
        "uuid": f"{job['id']}:0",
        "hostname": HOST,
        "timestamp": at,
        **fields,
    }


def run(handler: EventHandler, job: dict[str, Any], at: float, result: str = "'succeeded'") -> None:
    """Feed the received/started/succeeded events of one attempt."""
    handler(task_event("task-received", job, at, name="taskforge.run_job", args="[]"))
    handler(task_event("task-started", job, at + 1))
    handler(task_event("task-succeeded", job, at + 3, result=result, runtime=2.0))


def heartbeat(handler: EventHandler, queues: list[str], at: float | None = None) -> None:
    """A heartbeat of the shared worker, which consumes ``queues``."""
    handler.store.update_worker(HOST, {"queues": queues, "pool_size": "4"})
    handler(
        {
            "type": "worker-heartbeat",
            "hostname": HOST,
            "timestamp": at or time.time(),
            "freq": 2.0,
            "active": 1,
            "processed": 10,
            "loadavg": [0.5, 0.25, 0.1],
        }
    )


def test_task_ids_and_results_are_parsed() -> None:
    job_id = uuid.uuid4()
    assert parse_task_id(f"{job_id}:2") == (job_id, 2)
    assert parse_task_id("celery-task-id") is None
    assert parse_task_id(None) is None
    assert Outcome.from_event("'retrying'") == "retrying"
    assert Outcome.from_event("None") is None


def test_the_lru_forgets_the_least_recently_used() -> None:
    cache: LRU[int, int] = LRU(2)
    loads: list[int] = []

    def load(key: int) -> int:
        loads.append(key)
        return key * 10

    assert [cache.get(k, load) for k in (1, 2, 1, 3, 2, 1)] == [10, 20, 10, 30, 20, 10]
    assert loads == [1, 2, 3, 2, 1]
    assert cache.get(9, lambda _k: None) is None and len(cache) == 2


def test_a_job_shows_its_state_changes_newest_first(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    job = submit(client, owner, queue, "echo", payload=1)
    at = time.time() - 10
    run(handler, job, at)
    tasks = api(client, owner, "/monitor/tasks")["tasks"]
    assert [t["state"] for t in tasks] == ["succeeded", "started", "received"]
    done = tasks[0]
    assert done == {
        "job_id": job["id"],
        "queue_id": queue["id"],
        "job_type": "echo",
        "state": "succeeded",
        "worker": HOST,
        "timestamp": datetime.fromtimestamp(at + 3, UTC).isoformat(),
        "runtime": 2.0,
        "error": None,
        "attempt": 1,
        "organization_id": owner.organization_id,
        "payload": 1,
        "result": None,
        "max_attempts": 3,
        "retries": 0,
        "exception": None,
        "traceback": None,
    }


def test_outcomes_come_from_the_executor_result(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    handler: EventHandler,
    settings: Settings,
) -> None:
    failing = submit(client, owner, queue, "fail")
    dropped = submit(client, owner, queue, "echo")
    handed = submit(client, owner, queue, "echo")
    held = submit(client, owner, queue, "echo")
    with session_scope(settings.database_url) as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(failing["id"])).values(error="boom"))
    at = time.time()
    run(handler, failing, at, result="'retrying'")
    run(handler, dropped, at, result="'dropped'")
    run(handler, handed, at, result="'handed_on'")
    run(handler, held, at, result="'held_back'")
    by_job = {
        t["job_id"]: t
        for t in api(client, owner, "/monitor/tasks", state="retried")["tasks"]
        + api(client, owner, "/monitor/tasks", state="rejected")["tasks"]
    }
    assert by_job[failing["id"]]["error"] == "boom"
    assert by_job[dropped["id"]]["state"] == "rejected"
    assert "not claimable" in by_job[dropped["id"]]["error"]
    assert by_job[handed["id"]]["state"] == "rejected"
    assert "handed on" in by_job[handed["id"]]["error"]
    assert by_job[held["id"]]["state"] == "rejected"
    assert "policy" in by_job[held["id"]]["error"]
    handler(task_event("task-failed", failing, at + 5, exception="WorkerLostError()"))
    failed = api(client, owner, "/monitor/tasks", state="failed")["tasks"]
    assert failed[0]["error"] == "WorkerLostError()"


def test_failed_attempts_come_from_celery_failure_and_retry_events(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    job = submit(client, owner, queue, "fail")
    at = time.time()
    handler(task_event("task-received", job, at, name="taskforge.run_job"))
    handler(task_event("task-started", job, at + 1))
    handler(task_event("task-retried", job, at + 3, exception="JobFailed('boom')"))
    retried = api(client, owner, "/monitor/tasks", state="retried")["tasks"]
    assert [(t["job_id"], t["error"], t["runtime"]) for t in retried] == [
        (job["id"], "JobFailed('boom')", 2.0)
    ]
    last = {**task_event("task-failed", job, at + 9, exception="JobFailed('boom')")}
    last["uuid"] = f"{job['id']}:1"
    handler(last)
    failed = api(client, owner, "/monitor/tasks", state="failed")["tasks"]
    assert [(t["attempt"], t["error"]) for t in failed] == [(2, "JobFailed('boom')")]


def test_events_are_applied_in_batches(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    store: LiveState,
    settings: Settings,
) -> None:
    batched = EventHandler(store, Lookups(settings.database_url), batch_size=4, max_delay=60)
    jobs = [submit(client, owner, queue, "echo") for _ in range(2)]
    for job in jobs:
        batched(task_event("task-received", job, time.time(), name="taskforge.run_job"))
    assert api(client, owner, "/monitor/tasks")["tasks"] == []
    for job in jobs:
        batched(task_event("task-started", job, time.time()))
    assert len(api(client, owner, "/monitor/tasks")["tasks"]) == 4
    batched(task_event("task-succeeded", jobs[0], time.time(), result="'succeeded'"))
    batched.flush()
    assert len(api(client, owner, "/monitor/tasks")["tasks"]) == 5


def test_other_tasks_and_unknown_jobs_are_ignored(
    client: FlaskClient, owner: Account, handler: EventHandler
) -> None:
    handler({"type": "task-received", "uuid": "abc", "name": "taskforge.relay"})
    handler({"type": "task-started", "uuid": f"{uuid.uuid4()}:0", "hostname": HOST})
    handler({"type": "task-received", "uuid": f"{uuid.uuid4()}:0", "name": "other.task"})
    assert api(client, owner, "/monitor/tasks")["tasks"] == []


def test_tasks_filter_by_queue_state_type_and_time(
    client: FlaskClient, owner: Account, handler: EventHandler
) -> None:
    first = create_queue(client, owner, "first")
    second = create_queue(client, owner, "second")
    old = submit(client, owner, first, "echo")
    new = submit(client, owner, second, "sleep")
    run(handler, old, time.time() - 3600)
    run(handler, new, time.time())

    def jobs(**query: Any) -> list[str]:
        return [t["job_id"] for t in api(client, owner, "/monitor/tasks", **query)["tasks"]]

    assert set(jobs(queue_id=first["id"])) == {old["id"]}
    assert set(jobs(job_type="sleep")) == {new["id"]}
    assert jobs(state="started") == [new["id"], old["id"]]
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert set(jobs(since=since)) == {new["id"]}
    assert len(jobs(limit=2)) == 2


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 501},
        {"state": "exploded"},
        {"queue_id": "nope"},
        {"since": "2024-01-01T00:00:00"},
    ],
)
def test_bad_task_filters_answer_400(
    client: FlaskClient, owner: Account, query: dict[str, Any]
) -> None:
    response = client.get("/api/v1/monitor/tasks", query_string=query, headers=owner.headers)
    assert response.status_code == 400, response.json


def test_the_recent_list_is_capped(
    client: FlaskClient, owner: Account, queue: dict[str, Any], store: LiveState
) -> None:
    item = {"job_id": "j", "queue_id": queue["id"], "state": "received", "timestamp": "x"}
    for _ in range(1005):
        store.record_task(owner.organization_id, item, task_id="j:0", at=time.time())
    assert len(store.recent_tasks(owner.organization_id)) == 1000


def test_a_shared_worker_shows_each_tenant_only_its_own_work(
    client: FlaskClient,
    owner: Account,
    auth: Auth,
    queue: dict[str, Any],
    handler: EventHandler,
) -> None:
    stranger = auth.register("Other")
    theirs = create_queue(client, stranger, "theirs")
    idle = auth.register("Idle")
    heartbeat(handler, [f"tf.{queue['id']}", f"tf.{theirs['id']}", "taskforge.internal"])
    run(handler, submit(client, owner, queue, "echo"), time.time())
    handler(task_event("task-started", submit(client, owner, queue, "echo"), time.time()))

    mine = api(client, owner, "/monitor/workers")["workers"]
    assert len(mine) == 1
    worker = mine[0]
    assert worker["hostname"] == HOST and worker["id"] is None
    assert worker["status"] == "online"
    assert worker["queues"] == [f"tf.{queue['id']}"]
    assert (worker["active"], worker["processed"], worker["failed"]) == (1, 1, 0)
    assert worker["pool_size"] == 4 and worker["loadavg"] == [0.5, 0.25, 0.1]
    assert datetime.fromisoformat(worker["last_heartbeat"]).tzinfo is not None

    other = api(client, stranger, "/monitor/workers")["workers"]
    assert other[0]["queues"] == [f"tf.{theirs['id']}"]
    assert (other[0]["active"], other[0]["processed"]) == (0, 0)
    assert api(client, stranger, "/monitor/tasks")["tasks"] == []
    assert api(client, idle, "/monitor/workers")["workers"] == []


def test_a_worker_serves_a_queue_once_it_receives_a_job_of_it(
    client: FlaskClient, owner: Account, queue: dict[str, Any], handler: EventHandler
) -> None:
    handler({"type": "worker-heartbeat", "hostname": HOST, "timestamp": time.time(), "freq": 2})
    assert api(client, owner, "/monitor/workers")["workers"] == []
    job = submit(client, owner, queue, "echo")
    handler(task_event("task-received", job, time.time(), name="taskforge.run_job"))
    workers = api(client, owner, "/monitor/workers")["workers"]
    assert [w["queues"] for w in workers] == [[f"tf.{queue['id']}"]]


def test_an_own_worker_shows_its_id_and_sql_status(
    client: FlaskClient, owner: Account, handler: EventHandler, store: LiveState
) -> None:
    store.set_registry(
        {
            HOST: {
                "id": "w-1",
                "organization_id": owner.organization_id,
                "status": "draining",
                "worker_type": "general",
                "queues": ["tf.x", "taskforge.internal"],
            }
        }
    )
    handler({"type": "worker-online", "hostname": HOST, "timestamp": time.time(), "freq": 2.0})
    worker = api(client, owner, "/monitor/workers")["workers"][0]
    assert (worker["id"], worker["status"]) == ("w-1", "draining")
    assert worker["queues"] == ["tf.x", "taskforge.internal"]
    handler({"type": "worker-offline", "hostname": HOST, "timestamp": time.time()})
    assert api(client, owner, "/monitor/workers")["workers"][0]["status"] == "offline"


def test_a_silent_worker_reads_offline() -> None:
    state = {"status": "online", "last_heartbeat": repr(time.time() - 7), "freq": "2.0"}
    assert not is_alive(state)
    assert is_alive(state, now=time.time() - 2)


def test_queue_overview_counts_consumers_throughput_and_waiting(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    handler: EventHandler,
    store: LiveState,
    settings: Settings,
) -> None:
    heartbeat(handler, [f"tf.{queue['id']}"])
    minute_start = (time.time() // 60 - 1) * 60
    for offset in (1, 2):
        run(handler, submit(client, owner, queue, "echo"), minute_start + offset)
    waiting = submit(client, owner, queue, "echo")
    store.set_oldest({queue["id"]: datetime.fromisoformat(waiting["created_at"]).timestamp()})
    with session_scope(settings.database_url) as session:
        actor: Actor = actor_for_user_id(session, owner.user_id)
        overview = live_view.queue_overview(
            session, actor=actor, store=store, depth=lambda _name: 7, now=minute_start + 65
        )
    assert overview[0]["throughput_per_minute"] == 2
    body = api(client, owner, "/monitor/queues")["queues"]
    assert [q["queue_id"] for q in body] == [queue["id"]]
    entry = body[0]
    assert entry["name"] == queue["name"] and entry["is_active"] is True
    assert entry["consumers"] == 1
    assert entry["depth"] == 3  # three published messages, no worker consumed them
    assert 0 <= entry["oldest_waiting_seconds"] < 60


def test_oldest_waiting_counts_due_jobs_from_the_moment_they_became_due(
    client: FlaskClient, owner: Account, store: LiveState, settings: Settings
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled, retried, not_due = (create_queue(client, owner, name) for name in "abc")
    due = submit(client, owner, scheduled, "echo", scheduled_for=later)
    retrying = submit(client, owner, retried, "echo")
    submit(client, owner, not_due, "echo", scheduled_for=later)
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        # Still ``scheduled``, due 30 s ago: the worker that held its message died.
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(due["id"]))
            .values(available_at=now - timedelta(seconds=30))
        )
        # Submitted an hour ago, its retry became due 10 s ago.
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(retrying["id"]))
            .values(created_at=now - timedelta(hours=1), available_at=now - timedelta(seconds=10))
        )
    store.set_oldest(Lookups(settings.database_url).oldest_waiting())
    waiting = {
        q["name"]: q["oldest_waiting_seconds"]
        for q in api(client, owner, "/monitor/queues")["queues"]
    }
    assert waiting["c"] is None, "a job not due yet is not waiting"
    assert waiting["a"] is not None and 30 <= waiting["a"] < 90, waiting
    assert waiting["b"] is not None and 10 <= waiting["b"] < 70, waiting


def test_a_viewer_reads_the_monitor_but_cannot_control_pools(
    client: FlaskClient, owner: Account, auth: Auth
) -> None:
    viewer = auth.member(owner, "viewer")
    for path in ("/monitor/workers", "/monitor/tasks", "/monitor/queues"):
        api(client, viewer, path)
    response = client.post(
        f"/api/v1/monitor/workers/{HOST}/pool", json={"action": "grow"}, headers=viewer.headers
    )
    assert response.status_code == 403, response.json


def test_the_monitor_needs_authentication(client: FlaskClient) -> None:
    for path in ("workers", "tasks", "queues", "events"):
        assert client.get(f"/api/v1/monitor/{path}").status_code == 401


def test_published_events_are_json(store: LiveState, owner: Account) -> None:
    pubsub = store.subscribe(owner.organization_id)
    try:
        pubsub.get_message(timeout=0.1)
        store.publish(owner.organization_id, "worker", {"hostname": HOST})
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
        assert message is not None
        assert json.loads(message["data"]) == {"event": "worker", "data": {"hostname": HOST}}
    finally:
        pubsub.close()
