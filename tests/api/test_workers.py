"""/workers over REST: register, list, get, heartbeat, drain, and the offline sweeper."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from app.db import session_scope
from app.models import WorkerType
from app.services import workers as worker_service
from tests.conftest import Account, Auth
from tests.support.execution import mark_silent_workers_offline
from tests.support.workers import wait_for


def _register(client: FlaskClient, account: Account, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/workers", json={"name": "worker-1", **body}, headers=account.headers
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_register_then_get(client: FlaskClient, owner: Account) -> None:
    worker = _register(
        client,
        owner,
        worker_type="specialized_gpu",
        capabilities={"gpus": 2},
        max_concurrent_jobs=4,
    )
    assert uuid.UUID(worker["id"])
    assert worker["status"] == "online"
    assert worker["worker_type"] == "specialized_gpu"
    assert worker["capabilities"] == {"gpus": 2}
    assert worker["max_concurrent_jobs"] == 4
    assert worker["drain_mode"] is False
    assert worker["hostname"] is None
    fetched = client.get(f"/api/v1/workers/{worker['id']}", headers=owner.headers)
    assert fetched.status_code == 200
    assert fetched.json == worker


def test_list_filters_and_paginates_like_queues(client: FlaskClient, owner: Account) -> None:
    for i in range(3):
        _register(client, owner, name=f"general-{i}")
    gpu = _register(client, owner, name="gpu", worker_type="specialized_gpu")
    client.post(f"/api/v1/workers/{gpu['id']}/drain", headers=owner.headers)
    page = client.get("/api/v1/workers?limit=2&page=2", headers=owner.headers).json
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 4, "pages": 2}
    assert [w["name"] for w in page["workers"]] == ["general-2", "gpu"]
    by_type = client.get("/api/v1/workers?worker_type=specialized_gpu", headers=owner.headers)
    assert [w["name"] for w in by_type.json["workers"]] == ["gpu"]
    by_status = client.get("/api/v1/workers?status=draining", headers=owner.headers)
    assert [w["name"] for w in by_status.json["workers"]] == ["gpu"]


@pytest.mark.parametrize(
    "query", ["limit=101", "limit=0", "worker_type=quantum", "status=sleeping", "page=0"]
)
def test_bad_list_arguments_answer_400(client: FlaskClient, owner: Account, query: str) -> None:
    response = client.get(f"/api/v1/workers?{query}", headers=owner.headers)
    assert response.status_code == 400, response.json


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": "x" * 101}, {"max_concurrent_jobs": 0}, {"worker_type": "x"}],
)
def test_bad_registrations_answer_400(
    client: FlaskClient, owner: Account, body: dict[str, Any]
) -> None:
    response = client.post("/api/v1/workers", json={"name": "w", **body}, headers=owner.headers)
    assert response.status_code == 400, response.json


def test_heartbeat_records_metadata_and_says_when_next(client: FlaskClient, owner: Account) -> None:
    worker = _register(client, owner)
    response = client.post(
        f"/api/v1/workers/{worker['id']}/heartbeat",
        json={"metadata": {"load": "0.5"}},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["success"] is True and body["status"] == "online" and not body["drain_mode"]
    next_at = datetime.fromisoformat(body["next_heartbeat_at"])
    fetched = client.get(f"/api/v1/workers/{worker['id']}", headers=owner.headers).json
    assert fetched["metadata"] == {"load": "0.5"}
    last = datetime.fromisoformat(fetched["last_heartbeat"])
    assert next_at - last == timedelta(seconds=10)


def test_drain_keeps_the_worker_draining_across_heartbeats(
    client: FlaskClient, owner: Account
) -> None:
    worker = _register(client, owner)
    drained = client.post(f"/api/v1/workers/{worker['id']}/drain", headers=owner.headers)
    assert drained.status_code == 202, drained.json
    assert drained.json["status"] == "draining" and drained.json["drain_mode"] is True
    beat = client.post(f"/api/v1/workers/{worker['id']}/heartbeat", headers=owner.headers)
    assert beat.json["status"] == "draining" and beat.json["drain_mode"] is True
    again = client.post(f"/api/v1/workers/{worker['id']}/drain", headers=owner.headers)
    assert again.status_code == 202


def test_an_offline_worker_cannot_be_drained(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    worker = _register(client, owner)
    with session_scope(settings.database_url) as session:
        worker_service.mark_system_worker_offline(session, worker_id=uuid.UUID(worker["id"]))
    response = client.post(f"/api/v1/workers/{worker['id']}/drain", headers=owner.headers)
    assert response.status_code == 409, response.json


def test_other_organizations_see_nothing(client: FlaskClient, owner: Account, auth: Auth) -> None:
    worker = _register(client, owner)
    stranger = auth.register("Other")
    listing = client.get("/api/v1/workers", headers=stranger.headers).json
    assert listing["workers"] == []
    for method, path in [
        ("get", f"/api/v1/workers/{worker['id']}"),
        ("post", f"/api/v1/workers/{worker['id']}/heartbeat"),
        ("post", f"/api/v1/workers/{worker['id']}/drain"),
    ]:
        response = getattr(client, method)(path, headers=stranger.headers)
        assert response.status_code == 404, (path, response.json)


def test_a_viewer_reads_but_cannot_register_or_drain(
    client: FlaskClient, owner: Account, auth: Auth
) -> None:
    worker = _register(client, owner)
    viewer = auth.member(owner, "viewer")
    assert client.get("/api/v1/workers", headers=viewer.headers).status_code == 200
    assert client.get(f"/api/v1/workers/{worker['id']}", headers=viewer.headers).status_code == 200
    register = client.post("/api/v1/workers", json={"name": "x"}, headers=viewer.headers)
    assert register.status_code == 403, register.json
    drain = client.post(f"/api/v1/workers/{worker['id']}/drain", headers=viewer.headers)
    assert drain.status_code == 403, drain.json


def test_silent_workers_are_swept_offline(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    worker = _register(client, owner)
    assert mark_silent_workers_offline(settings.database_url, heartbeat_seconds=10) == 0
    wait_for(
        lambda: mark_silent_workers_offline(settings.database_url, heartbeat_seconds=0.05) == 1,
        5,
        "the silent worker was never marked offline",
    )
    fetched = client.get(f"/api/v1/workers/{worker['id']}", headers=owner.headers).json
    assert fetched["status"] == "offline"
    assert mark_silent_workers_offline(settings.database_url, heartbeat_seconds=0.05) == 0


def test_a_worker_registers_itself_by_nodename(settings: Settings, owner: Account) -> None:
    org = uuid.UUID(owner.organization_id)
    with session_scope(settings.database_url) as session:
        first = worker_service.register_system_worker(
            session,
            hostname="celery@box",
            organization_id=org,
            worker_type=WorkerType.SPECIALIZED_IO,
            capabilities={"disk": "ssd"},
            concurrency=4,
            queues=["tf.a"],
        )
        first_id = first.id
        first.drain_mode = True
    time.sleep(0.01)
    with session_scope(settings.database_url) as session:
        again = worker_service.register_system_worker(
            session,
            hostname="celery@box",
            organization_id=org,
            worker_type=WorkerType.GENERAL,
            capabilities=None,
            concurrency=2,
            queues=["tf.b"],
        )
        assert again.id == first_id
        assert (again.worker_type, again.max_concurrent_jobs, again.queues) == (
            WorkerType.GENERAL,
            2,
            ["tf.b"],
        )
        assert again.drain_mode is False
