"""/queues: CRUD, pause/resume, stats, validation limits."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Account


def _create(client: FlaskClient, owner: Account, **body: Any) -> Any:
    return client.post("/api/v1/queues", json={"name": "emails", **body}, headers=owner.headers)


def test_create_queue_in_default_project(client: FlaskClient, owner: Account) -> None:
    response = _create(
        client,
        owner,
        description="Outgoing mail",
        priority=5,
        settings={"max_attempts": 5, "timeout_seconds": 60},
    )
    assert response.status_code == 201
    queue = response.json
    assert set(queue) == {
        "id",
        "project_id",
        "name",
        "description",
        "priority",
        "settings",
        "is_active",
        "created_at",
        "updated_at",
    }
    assert (queue["name"], queue["priority"], queue["is_active"]) == ("emails", 5, True)
    projects = client.get("/api/v1/projects", headers=owner.headers).json["projects"]
    assert queue["project_id"] == projects[0]["id"]


def test_duplicate_queue_name_is_409(client: FlaskClient, owner: Account) -> None:
    assert _create(client, owner).status_code == 201
    again = _create(client, owner)
    assert again.status_code == 409
    assert again.json == {"error": "A queue named 'emails' already exists", "status_code": 409}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"description": "d" * 501}, "description"),
        ({"priority": -1}, "priority"),
        ({"priority": 10}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"settings": {"max_attempts": 11}}, "settings.max_attempts"),
        ({"settings": {"max_attempts": 0}}, "settings.max_attempts"),
        ({"settings": {"bogus": 1}}, "settings.bogus"),
        ({"settings": {"worker_type": "quantum"}}, "settings.worker_type"),
        ({"settings": "fast"}, "settings"),
        ({"project_id": "nope"}, "project_id"),
        ({"is_active": False}, "is_active"),
    ],
)
def test_create_queue_validates(
    client: FlaskClient, owner: Account, body: dict, field: str
) -> None:
    response = _create(client, owner, **body)
    assert response.status_code == 400, response.json
    assert field in response.json["errors"]
    assert client.get("/api/v1/queues", headers=owner.headers).json["pagination"]["total"] == 0


def test_queue_in_unknown_project_is_404(client: FlaskClient, owner: Account) -> None:
    response = _create(client, owner, project_id="00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404


def test_get_put_patch_delete(client: FlaskClient, owner: Account) -> None:
    queue = _create(client, owner, priority=3, description="old").json
    url = f"/api/v1/queues/{queue['id']}"
    assert client.get(url, headers=owner.headers).json == queue
    patched = client.patch(url, json={"priority": 7}, headers=owner.headers).json
    assert (patched["priority"], patched["description"]) == (7, "old")
    replaced = client.put(url, json={"name": "mail"}, headers=owner.headers).json
    assert (replaced["name"], replaced["priority"], replaced["description"]) == ("mail", 0, None)
    assert client.put(url, json={"priority": 1}, headers=owner.headers).status_code == 400
    assert client.delete(url, headers=owner.headers).status_code == 204
    assert client.get(url, headers=owner.headers).status_code == 404


def test_rename_to_an_existing_name_is_409(client: FlaskClient, owner: Account) -> None:
    first = _create(client, owner).json
    _create(client, owner, name="sms")
    response = client.patch(
        f"/api/v1/queues/{first['id']}", json={"name": "sms"}, headers=owner.headers
    )
    assert response.status_code == 409


def test_delete_with_active_jobs_is_409(client: FlaskClient, owner: Account) -> None:
    queue = _create(client, owner).json
    client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=owner.headers
    )
    response = client.delete(f"/api/v1/queues/{queue['id']}", headers=owner.headers)
    assert response.status_code == 409
    assert client.get(f"/api/v1/queues/{queue['id']}", headers=owner.headers).status_code == 200


def test_pause_and_resume(client: FlaskClient, owner: Account) -> None:
    queue = _create(client, owner).json
    url = f"/api/v1/queues/{queue['id']}"
    assert client.post(f"{url}/pause", headers=owner.headers).status_code == 204
    assert client.get(url, headers=owner.headers).json["is_active"] is False
    accepted = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=owner.headers
    )
    assert accepted.status_code == 201 and accepted.json["status"] == "pending"
    assert client.post(f"{url}/resume", headers=owner.headers).status_code == 204
    assert client.get(url, headers=owner.headers).json["is_active"] is True


def test_list_is_paginated(client: FlaskClient, owner: Account) -> None:
    for i in range(12):
        _create(client, owner, name=f"q{i:02}")
    first = client.get("/api/v1/queues", headers=owner.headers).json
    assert first["pagination"] == {"page": 1, "limit": 10, "total": 12, "pages": 2}
    assert [q["name"] for q in first["queues"]][:2] == ["q00", "q01"]
    second = client.get("/api/v1/queues?page=2&limit=10", headers=owner.headers).json
    assert [q["name"] for q in second["queues"]] == ["q10", "q11"]
    beyond = client.get("/api/v1/queues?page=3", headers=owner.headers).json
    assert beyond["queues"] == [] and beyond["pagination"]["total"] == 12


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "page=0", "limit=abc", "page=-1"])
def test_list_rejects_bad_paging(client: FlaskClient, owner: Account, query: str) -> None:
    response = client.get(f"/api/v1/queues?{query}", headers=owner.headers)
    assert response.status_code == 400
    assert response.json["status_code"] == 400


def test_stats_count_jobs_per_state(client: FlaskClient, owner: Account) -> None:
    queue = _create(client, owner).json
    submit = {"queue_id": queue["id"], "job_type": "echo"}
    job = client.post("/api/v1/jobs", json=submit, headers=owner.headers).json
    client.post("/api/v1/jobs", json=submit, headers=owner.headers)
    client.post(
        "/api/v1/jobs",
        json={**submit, "scheduled_for": "2099-01-01T00:00:00Z"},
        headers=owner.headers,
    )
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers)
    stats = client.get(f"/api/v1/queues/{queue['id']}/stats", headers=owner.headers)
    assert stats.status_code == 200
    body = stats.json
    assert (body["pending_count"], body["scheduled_count"], body["cancelled_count"]) == (1, 1, 1)
    assert (body["processing_count"], body["succeeded_count"], body["failed_count"]) == (0, 0, 0)
    assert body["total_count"] == 3
    assert body["is_active"] is True
    assert body["broker_depth"] == 2  # two published; the far-future one waits in SQL
    assert body["last_activity"] is not None
    assert body["oldest_pending_age_seconds"] >= 0
