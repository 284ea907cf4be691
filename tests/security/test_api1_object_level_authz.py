"""API1 Broken Object Level Authorization: another organization's objects do not exist.

``tests/api/test_tenancy.py`` covers every by-id call with a bearer token; this
module adds API keys as objects and as credentials.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.services.actors import Permission
from tests.conftest import Account, Auth
from tests.security.support import create_key, key_headers
from tests.support.calls import BY_ID, their_objects

ALL_SCOPES = sorted(p.value for p in Permission)

WORKER_CALLS = {
    "get worker": lambda c, w, h: c.get(f"/api/v1/workers/{w['id']}", headers=h),
    "heartbeat": lambda c, w, h: c.post(f"/api/v1/workers/{w['id']}/heartbeat", headers=h),
    "drain worker": lambda c, w, h: c.post(f"/api/v1/workers/{w['id']}/drain", headers=h),
    "resize pool": lambda c, w, h: c.post(
        f"/api/v1/monitor/workers/{w['name']}/pool", json={"action": "grow", "n": 1}, headers=h
    ),
}

KEY_CALLS = {
    "get key": lambda c, i, h: c.get(f"/api/v1/api-keys/{i}", headers=h),
    "delete key": lambda c, i, h: c.delete(f"/api/v1/api-keys/{i}", headers=h),
    "revoke key": lambda c, i, h: c.post(f"/api/v1/api-keys/{i}/revoke", headers=h),
}


@pytest.fixture
def theirs(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """Objects of ``owner``'s organization, including an API key and a worker."""
    return {
        **their_objects(client, owner),
        "key": create_key(client, owner, ["queue:read"]),
        "worker": client.post(
            "/api/v1/workers", json={"name": "secret-worker"}, headers=owner.headers
        ).json,
    }


def _intruder_headers(client: FlaskClient, intruder: Account, credential: str) -> dict[str, str]:
    if credential == "token":
        return intruder.headers
    return key_headers(create_key(client, intruder, ALL_SCOPES))


@pytest.mark.parametrize("name", sorted(KEY_CALLS))
@pytest.mark.parametrize("credential", ["token", "api-key"])
def test_other_organizations_api_keys_are_not_found(
    client: FlaskClient, auth: Auth, theirs: dict, name: str, credential: str
) -> None:
    headers = _intruder_headers(client, auth.register("Intruder"), credential)
    response = KEY_CALLS[name](client, theirs["key"]["id"], headers)
    assert response.status_code == 404
    assert response.json == {"error": "API key not found", "status_code": 404}
    assert client.get("/api/v1/queues", headers=key_headers(theirs["key"])).status_code == 200


@pytest.mark.parametrize("name", sorted(WORKER_CALLS))
@pytest.mark.parametrize("credential", ["token", "api-key"])
def test_other_organizations_workers_are_not_found(
    client: FlaskClient, auth: Auth, owner: Account, theirs: dict, name: str, credential: str
) -> None:
    headers = _intruder_headers(client, auth.register("Intruder"), credential)
    response = WORKER_CALLS[name](client, theirs["worker"], headers)
    assert response.status_code == 404, response.json
    assert response.json == {"error": "Worker not found", "status_code": 404}
    mine = client.get(f"/api/v1/workers/{theirs['worker']['id']}", headers=owner.headers).json
    assert mine["drain_mode"] is False


def test_worker_lists_show_only_the_callers_organization(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    assert client.get("/api/v1/workers", headers=intruder.headers).json["workers"] == []
    assert client.get("/api/v1/monitor/workers", headers=intruder.headers).json["workers"] == []


def test_unknown_key_id_answers_exactly_like_another_organizations(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    foreign = client.get(f"/api/v1/api-keys/{theirs['key']['id']}", headers=intruder.headers)
    missing = client.get(
        "/api/v1/api-keys/00000000-0000-4000-8000-000000000000", headers=intruder.headers
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json


def test_key_lists_show_only_the_callers_organization(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    mine = create_key(client, intruder, ["job:read"])
    listed = client.get("/api/v1/api-keys", headers=intruder.headers).json
    assert [k["id"] for k in listed["api_keys"]] == [mine["id"]]


@pytest.mark.parametrize("name", sorted(BY_ID))
def test_an_api_key_cannot_reach_another_organizations_objects(
    client: FlaskClient, auth: Auth, owner: Account, theirs: dict, name: str
) -> None:
    intruder = auth.register("Intruder")
    headers = key_headers(create_key(client, intruder, ALL_SCOPES))
    response = BY_ID[name](client, theirs, headers)
    assert response.status_code == 404, response.json
    job = client.get(f"/api/v1/jobs/{theirs['job']['id']}", headers=owner.headers).json
    assert job["status"] == "pending"


def test_an_api_key_lists_only_its_organization(
    client: FlaskClient, auth: Auth, theirs: dict
) -> None:
    intruder = auth.register("Intruder")
    headers = key_headers(create_key(client, intruder, ALL_SCOPES))
    assert client.get("/api/v1/queues", headers=headers).json["pagination"]["total"] == 0
    assert client.get("/api/v1/jobs", headers=headers).json["pagination"]["total"] == 0
    filtered = client.get(f"/api/v1/jobs?queue_id={theirs['queue']['id']}", headers=headers)
    assert filtered.json["jobs"] == []
