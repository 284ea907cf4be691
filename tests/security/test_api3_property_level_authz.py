"""API3 Broken Object Property Level Authorization: no secret is shown, no server field is set.

Every response of this suite is also scanned for secrets after each test
(``conftest._no_secrets_in_responses``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import create_key, leaked_secrets

Call = Callable[[FlaskClient, dict[str, Any], dict[str, str]], Any]


@pytest.fixture
def world(client: FlaskClient, auth: Auth, owner: Account) -> dict[str, Any]:
    h = owner.headers
    queue = client.post("/api/v1/queues", json={"name": "q"}, headers=h).json
    return {
        "org": owner.organization_id,
        "member": auth.member(owner, "member"),
        "project": client.post("/api/v1/projects", json={"name": "p"}, headers=h).json,
        "queue": queue,
        "job": client.post(
            "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=h
        ).json,
        "key": create_key(client, owner, ["job:read"]),
    }


SERVER_FIELDS: dict[str, tuple[Call, str]] = {
    "job status": (
        lambda c, w, h: c.post(
            "/api/v1/jobs",
            json={"queue_id": w["queue"]["id"], "job_type": "echo", "status": "succeeded"},
            headers=h,
        ),
        "status",
    ),
    "job attempt_count": (
        lambda c, w, h: c.post(
            "/api/v1/jobs",
            json={"queue_id": w["queue"]["id"], "job_type": "echo", "attempt_count": 9},
            headers=h,
        ),
        "attempt_count",
    ),
    "job organization_id": (
        lambda c, w, h: c.post(
            "/api/v1/jobs",
            json={"queue_id": w["queue"]["id"], "job_type": "echo", "organization_id": w["org"]},
            headers=h,
        ),
        "organization_id",
    ),
    "job result": (
        lambda c, w, h: c.post(
            "/api/v1/jobs",
            json={"queue_id": w["queue"]["id"], "job_type": "echo", "result": {"ok": 1}},
            headers=h,
        ),
        "result",
    ),
    "queue organization_id": (
        lambda c, w, h: c.post(
            "/api/v1/queues", json={"name": "n", "organization_id": w["org"]}, headers=h
        ),
        "organization_id",
    ),
    "queue id": (
        lambda c, w, h: c.patch(
            f"/api/v1/queues/{w['queue']['id']}", json={"id": w["job"]["id"]}, headers=h
        ),
        "id",
    ),
    "queue project_id on patch": (
        lambda c, w, h: c.patch(
            f"/api/v1/queues/{w['queue']['id']}",
            json={"project_id": w["project"]["id"]},
            headers=h,
        ),
        "project_id",
    ),
    "project organization_id": (
        lambda c, w, h: c.patch(
            f"/api/v1/projects/{w['project']['id']}", json={"organization_id": w["org"]}, headers=h
        ),
        "organization_id",
    ),
    "organization id": (
        lambda c, w, h: c.patch(
            f"/api/v1/organizations/{w['org']}", json={"id": w["queue"]["id"]}, headers=h
        ),
        "id",
    ),
    "member is_active": (
        lambda c, w, h: c.post(
            f"/api/v1/organizations/{w['org']}/members",
            json={"email": "n@example.com", "password": PASSWORD, "is_active": False},
            headers=h,
        ),
        "is_active",
    ),
    "member organization_id": (
        lambda c, w, h: c.post(
            f"/api/v1/organizations/{w['org']}/members",
            json={"email": "n@example.com", "password": PASSWORD, "organization_id": w["org"]},
            headers=h,
        ),
        "organization_id",
    ),
    "member email on role change": (
        lambda c, w, h: c.patch(
            f"/api/v1/organizations/{w['org']}/members/{w['member'].user_id}",
            json={"role": "viewer", "email": "takeover@example.com"},
            headers=h,
        ),
        "email",
    ),
    "key prefix": (
        lambda c, w, h: c.post(
            "/api/v1/api-keys",
            json={"name": "k", "scopes": ["job:read"], "prefix": "chosenprefix"},
            headers=h,
        ),
        "prefix",
    ),
    "key key_hash": (
        lambda c, w, h: c.post(
            "/api/v1/api-keys",
            json={"name": "k", "scopes": ["job:read"], "key_hash": "0" * 64},
            headers=h,
        ),
        "key_hash",
    ),
    "key organization_id": (
        lambda c, w, h: c.post(
            "/api/v1/api-keys",
            json={"name": "k", "scopes": ["job:read"], "organization_id": w["org"]},
            headers=h,
        ),
        "organization_id",
    ),
    "key revoked_at": (
        lambda c, w, h: c.post(
            "/api/v1/api-keys",
            json={"name": "k", "scopes": ["job:read"], "revoked_at": None},
            headers=h,
        ),
        "revoked_at",
    ),
    "registration role": (
        lambda c, w, h: c.post(
            "/api/v1/auth/register",
            json={
                "email": "new@example.com",
                "password": PASSWORD,
                "organization_name": "N",
                "role": "admin",
            },
        ),
        "role",
    ),
}


@pytest.mark.parametrize("name", sorted(SERVER_FIELDS))
def test_server_owned_fields_are_not_assignable(
    client: FlaskClient, owner: Account, world: dict, name: str
) -> None:
    call, field = SERVER_FIELDS[name]
    response = call(client, world, owner.headers)
    assert response.status_code == 400, response.json
    assert field in response.json["errors"]
    job = client.get(f"/api/v1/jobs/{world['job']['id']}", headers=owner.headers).json
    assert job["status"] == "pending" and job["attempt_count"] == 0


def test_members_are_shown_without_password_or_hash(
    client: FlaskClient, owner: Account, world: dict
) -> None:
    listed = client.get(
        f"/api/v1/organizations/{owner.organization_id}/members", headers=owner.headers
    ).json
    assert listed["members"]
    for member in listed["members"]:
        assert set(member) == {"id", "email", "role", "is_active", "created_at"}


def test_api_keys_are_shown_without_hash_or_secret(
    client: FlaskClient, owner: Account, world: dict
) -> None:
    shown = client.get(f"/api/v1/api-keys/{world['key']['id']}", headers=owner.headers).json
    assert set(shown) == {
        "id",
        "organization_id",
        "created_by_id",
        "created_by_key_id",
        "name",
        "prefix",
        "scopes",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "created_at",
    }
    assert world["key"]["key"].split("_", 2)[2] not in str(shown)


def test_the_secrets_scan_catches_leaks() -> None:
    assert leaked_secrets("GET", "/x", {"a": [{"password_hash": "h"}]}) == ["$.a[0].password_hash"]
    assert leaked_secrets("GET", "/x", {"v": "$argon2id$v=19$m=19456"}) == ["$.v"]
    assert leaked_secrets("GET", "/x", {"v": ["$argon2id$v=19"]}) == ["$.v[0]"]
    assert leaked_secrets("GET", "/api/v1/api-keys/1", {"key": "tf_x_y"}) == ["$.key"]
    assert leaked_secrets("POST", "/api/v1/api-keys", {"key": "tf_x_y"}) == []
    assert leaked_secrets("POST", "/x", {"errors": {"password": ["Too short."]}}) == []
    assert leaked_secrets("GET", "/api/v1/openapi.json", {"password": {"type": "string"}}) == []
