"""POST /jobs/batch: up to 1000 jobs, all or none, in one INSERT and one broker write."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from app.api.app import create_app
from app.config import Settings
from app.db import get_engine, session_scope
from app.models import Job
from tests.conftest import Account, Auth
from tests.support.workers import WorkerProcess, wait_for

BATCH = "/api/v1/jobs/batch"


def _jobs(queue: dict, count: int, **fields: Any) -> list[dict[str, Any]]:
    return [
        {"queue_id": queue["id"], "job_type": "echo", "payload": n, **fields} for n in range(count)
    ]


def _stored(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


@pytest.fixture
def statements(settings: Settings) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs during the test."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_batch_is_stored_in_order_with_one_insert(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings, statements: list[str]
) -> None:
    response = client.post(BATCH, json={"jobs": _jobs(queue, 1000)}, headers=owner.headers)
    assert response.status_code == 201, response.json
    jobs = response.json["jobs"]
    assert [job["payload"] for job in jobs] == list(range(1000))
    assert {job["status"] for job in jobs} == {"pending"}
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO JOBS")]
    assert len(inserts) == 1, f"{len(inserts)} INSERTs for one batch"
    assert _stored(settings) == 1000
    one = client.get(f"/api/v1/jobs/{jobs[7]['id']}", headers=owner.headers).json
    assert one == jobs[7]


def test_one_invalid_job_rejects_the_batch_and_each_bad_job_is_named(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    jobs = _jobs(queue, 5)
    jobs[1]["priority"] = 42
    jobs[3]["max_attempts"] = 99
    response = client.post(BATCH, json={"jobs": jobs}, headers=owner.headers)
    assert response.status_code == 400
    errors = response.json["errors"]
    assert set(errors) == {"1", "3"}
    assert "priority" in errors["1"] and "max_attempts" in errors["3"]
    assert _stored(settings) == 0


def test_the_services_checks_are_reported_per_job_too(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    jobs = _jobs(queue, 4)
    jobs[0]["payload"] = "NUL \u0000 is not storable"
    jobs[1]["job_type"] = "no spaces allowed"
    jobs[2]["idempotency_key"] = "k"
    jobs[3]["idempotency_key"] = "k"
    response = client.post(BATCH, json={"jobs": jobs}, headers=owner.headers)
    assert response.status_code == 400
    errors = response.json["errors"]
    assert set(errors) == {"0", "1", "3"}
    assert "payload" in errors["0"] and "job_type" in errors["1"]
    assert "jobs[2]" in errors["3"]["idempotency_key"][0]
    assert _stored(settings) == 0


@pytest.mark.parametrize("count", [0, 1001])
def test_the_batch_size_is_bounded(
    client: FlaskClient, owner: Account, queue: dict, count: int
) -> None:
    response = client.post(BATCH, json={"jobs": _jobs(queue, count)}, headers=owner.headers)
    assert response.status_code == 400
    assert "jobs" in response.json["errors"]


def test_replaying_the_keys_returns_the_original_jobs_and_creates_nothing(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    jobs = [{**job, "idempotency_key": f"order-{n}"} for n, job in enumerate(_jobs(queue, 10))]
    first = client.post(BATCH, json={"jobs": jobs}, headers=owner.headers).json["jobs"]
    # A replay may change the rest of a job: the key alone names it, as for a single submit.
    replay = [{**job, "priority": 9} for job in jobs[:6]] + _jobs(queue, 2)
    response = client.post(BATCH, json={"jobs": replay}, headers=owner.headers)
    assert response.status_code == 201, response.json
    again = response.json["jobs"]
    assert [job["id"] for job in again[:6]] == [job["id"] for job in first[:6]]
    assert {job["priority"] for job in again[:6]} == {0}
    assert not {job["id"] for job in again[6:]} & {job["id"] for job in first}
    single = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo"},
        headers={**owner.headers, "Idempotency-Key": "order-3"},
    )
    assert single.json["id"] == first[3]["id"]
    assert _stored(settings) == 12


def test_concurrent_duplicate_batches_create_each_job_once(
    app: Flask, owner: Account, queue: dict, settings: Settings
) -> None:
    callers = 4
    jobs = [{**job, "idempotency_key": f"dup-{n}"} for n, job in enumerate(_jobs(queue, 50))]
    barrier = threading.Barrier(callers, timeout=20)

    def submit(_: int) -> list[str]:
        own_client = app.test_client()
        barrier.wait()
        response = own_client.post(BATCH, json={"jobs": jobs}, headers=owner.headers)
        assert response.status_code == 201, response.json
        return [job["id"] for job in response.json["jobs"]]

    with ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(submit, range(callers)))
    assert all(answer == answers[0] for answer in answers)
    assert _stored(settings) == 50


def test_tenancy_and_permissions_are_those_of_a_single_submit(
    client: FlaskClient, auth: Auth, owner: Account, queue: dict, settings: Settings
) -> None:
    viewer = auth.member(owner, "viewer")
    response = client.post(BATCH, json={"jobs": _jobs(queue, 2)}, headers=viewer.headers)
    assert response.status_code == 403
    intruder = auth.register("Intruder")
    response = client.post(BATCH, json={"jobs": _jobs(queue, 2)}, headers=intruder.headers)
    assert response.status_code == 404
    assert "jobs[0]" in response.json["error"]
    assert _stored(settings) == 0


def test_every_job_of_a_batch_counts_against_the_rate_limit(
    settings: Settings, owner: Account, queue: dict
) -> None:
    limited = create_app(settings.replace(rate_limit_default="10 per minute")).test_client()
    post: Callable[[int], Any] = lambda n: limited.post(  # noqa: E731
        BATCH, json={"jobs": _jobs(queue, n)}, headers=owner.headers
    )
    assert post(8).status_code == 201
    refused = post(3)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    answered = post(2)
    assert answered.status_code == 201
    assert answered.headers["X-RateLimit-Remaining"] == "0"
    assert _stored(settings) == 10


@pytest.mark.slow
@pytest.mark.real_workers
def test_a_batch_of_1000_all_run_on_a_real_worker(
    client: FlaskClient, owner: Account, queue: dict, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-c", "2")
    response = client.post(BATCH, json={"jobs": _jobs(queue, 1000)}, headers=owner.headers)
    assert response.status_code == 201, response.json

    def succeeded() -> int:
        page = client.get("/api/v1/jobs?status=succeeded&limit=1", headers=owner.headers).json
        return int(page["pagination"]["total"])

    wait_for(
        lambda: succeeded() == 1000,
        300,
        f"only {succeeded()} of 1000 succeeded:\n{worker.log()[-3000:]}",
        interval=1,
    )
