"""Another organization's objects answer 404, exactly as if they did not exist."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Account, Auth
from tests.support.calls import BY_ID, their_objects


@pytest.fixture
def theirs(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """Objects of ``owner``'s organization."""
    return their_objects(client, owner)


@pytest.mark.parametrize("name", sorted(BY_ID))
def test_other_organizations_objects_are_not_found(
    client: FlaskClient, auth: Auth, owner: Account, theirs: dict, name: str
) -> None:
    intruder = auth.register("Intruder")
    response = BY_ID[name](client, theirs, intruder.headers)
    assert response.status_code == 404, response.json
    assert response.json["status_code"] == 404
    job = client.get(f"/api/v1/jobs/{theirs['job']['id']}", headers=owner.headers).json
    assert job["status"] == "pending"
    queue = client.get(f"/api/v1/queues/{theirs['queue']['id']}", headers=owner.headers).json
    assert queue == theirs["queue"]


def test_lists_show_only_the_callers_organization(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    h = intruder.headers
    assert client.get("/api/v1/queues", headers=h).json["pagination"]["total"] == 0
    assert client.get("/api/v1/jobs", headers=h).json["pagination"]["total"] == 0
    filtered = client.get(f"/api/v1/jobs?queue_id={theirs['queue']['id']}", headers=h).json
    assert filtered["jobs"] == []
    assert [p["name"] for p in client.get("/api/v1/projects", headers=h).json["projects"]] == [
        "default"
    ]


def test_same_queue_name_in_two_organizations(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    mine = client.post("/api/v1/queues", json={"name": "secret"}, headers=intruder.headers)
    assert mine.status_code == 201
    job = client.post(
        "/api/v1/jobs", json={"queue_name": "secret", "job_type": "echo"}, headers=intruder.headers
    )
    assert job.json["queue_id"] == mine.json["id"] != theirs["queue"]["id"]
