"""API5 Broken Function Level Authorization: roles and key scopes decide what a caller may do.

``tests/api/test_roles.py`` holds the viewer/member/admin matrix for queues,
jobs, projects and the organization; this module adds API keys, both as the
function being guarded and as the credential whose scopes guard the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.models import Role
from app.services.actors import ROLE_PERMISSIONS
from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import create_key, key_headers
from tests.support.calls import ADMIN_WRITES, QUEUE_AND_JOB_WRITES, READS

Call = Callable[[FlaskClient, dict[str, Any], dict[str, str]], Any]

KEY_ADMIN: dict[str, Call] = {
    "list keys": lambda c, w, h: c.get("/api/v1/api-keys", headers=h),
    "create key": lambda c, w, h: c.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["job:read"]}, headers=h
    ),
    "get key": lambda c, w, h: c.get(f"/api/v1/api-keys/{w['key']['id']}", headers=h),
    "revoke key": lambda c, w, h: c.post(f"/api/v1/api-keys/{w['key']['id']}/revoke", headers=h),
    "delete key": lambda c, w, h: c.delete(f"/api/v1/api-keys/{w['key']['id']}", headers=h),
}

WORKERS: dict[str, Call] = {
    "list workers": lambda c, w, h: c.get("/api/v1/workers", headers=h),
    "register worker": lambda c, w, h: c.post("/api/v1/workers", json={"name": "n"}, headers=h),
    "heartbeat": lambda c, w, h: c.post(
        f"/api/v1/workers/{w['worker']['id']}/heartbeat", headers=h
    ),
    "drain worker": lambda c, w, h: c.post(f"/api/v1/workers/{w['worker']['id']}/drain", headers=h),
}

# The permission each call needs; a write also reads the object it changes.
NEEDS: dict[str, str] = {
    "list queues": "queue:read",
    "get queue": "queue:read",
    "queue stats": "queue:read",
    "list jobs": "job:read",
    "get job": "job:read",
    "job stats": "job:read",
    "create queue": "queue:write",
    "patch queue": "queue:write",
    "put queue": "queue:write",
    "pause queue": "queue:write",
    "resume queue": "queue:write",
    "submit job": "job:write",
    "cancel job": "job:write",
    "rename org": "org:admin",
    "add member": "org:admin",
    "list workers": "worker:read",
    "register worker": "worker:write",
    "heartbeat": "worker:write",
    "drain worker": "worker:write",
} | dict.fromkeys(KEY_ADMIN, "apikey:admin")

ALSO_NEEDS = {
    "queue:write": ["queue:read"],
    "job:write": ["job:read"],
    "worker:write": ["worker:read"],
    # The key it makes holds job:read, which its creator must hold too.
    "apikey:admin": ["job:read"],
}

CALLS: dict[str, Call] = {
    name: call
    for name, call in (READS | QUEUE_AND_JOB_WRITES | ADMIN_WRITES | KEY_ADMIN | WORKERS).items()
    if name in NEEDS
}


@pytest.fixture
def world(client: FlaskClient, owner: Account) -> dict[str, Any]:
    h = owner.headers
    queue = client.post("/api/v1/queues", json={"name": "q"}, headers=h).json
    return {
        "org": owner.organization_id,
        "queue": queue,
        "job": client.post(
            "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=h
        ).json,
        "key": create_key(client, owner, ["job:read"], name="target"),
        "worker": client.post("/api/v1/workers", json={"name": "w"}, headers=h).json,
    }


@pytest.mark.parametrize("name", sorted(KEY_ADMIN))
@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_manage_api_keys(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, role: str, name: str
) -> None:
    account = auth.member(owner, role)
    response = KEY_ADMIN[name](client, world, account.headers)
    assert response.status_code == 403
    assert "apikey:admin" in response.json["error"]
    admin = auth.member(owner, "admin")
    assert KEY_ADMIN[name](client, world, admin.headers).status_code in (200, 201, 204)


@pytest.mark.parametrize("name", ["register worker", "heartbeat", "drain worker"])
@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_manage_workers(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, role: str, name: str
) -> None:
    account = auth.member(owner, role)
    response = WORKERS[name](client, world, account.headers)
    assert response.status_code == 403
    assert "worker:write" in response.json["error"]


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_key_may_call_only_what_its_scopes_allow(
    client: FlaskClient, owner: Account, world: dict, name: str
) -> None:
    needed = NEEDS[name]
    without = create_key(client, owner, sorted(ROLE_PERMISSIONS[Role.OWNER] - {needed}))
    denied = CALLS[name](client, world, key_headers(without))
    assert denied.status_code == 403, denied.json
    assert needed in denied.json["error"]
    only = create_key(client, owner, [needed, *ALSO_NEEDS.get(needed, [])])
    assert CALLS[name](client, world, key_headers(only)).status_code in (200, 201, 202, 204)


def test_a_read_only_key_cannot_submit_jobs(
    client: FlaskClient, owner: Account, world: dict
) -> None:
    key = key_headers(create_key(client, owner, ["job:read"]))
    assert client.get(f"/api/v1/jobs/{world['job']['id']}", headers=key).status_code == 200
    submitted = client.post(
        "/api/v1/jobs", json={"queue_id": world["queue"]["id"], "job_type": "echo"}, headers=key
    )
    assert submitted.status_code == 403
    assert client.get("/api/v1/jobs", headers=owner.headers).json["pagination"]["total"] == 1


def test_a_key_cannot_mint_a_stronger_key(client: FlaskClient, owner: Account) -> None:
    minting = create_key(client, owner, ["apikey:admin", "job:read"])
    key = key_headers(minting)
    stronger = client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["job:write"]}, headers=key
    )
    assert stronger.status_code == 403
    assert "job:write" in stronger.json["error"]
    same = client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["job:read"]}, headers=key)
    assert same.status_code == 201
    # Capped by the user at the top of its chain (tests/security/test_api_key_lineage.py).
    assert same.json["created_by_id"] == owner.user_id
    assert same.json["created_by_key_id"] == minting["id"]


def test_a_demoted_creators_keys_lose_what_the_creator_lost(
    client: FlaskClient, auth: Auth, owner: Account, world: dict
) -> None:
    admin = auth.member(owner, "admin")
    key = key_headers(create_key(client, admin, ["queue:read", "queue:write"]))
    assert client.post("/api/v1/queues", json={"name": "a"}, headers=key).status_code == 201
    demoted = client.patch(
        f"/api/v1/organizations/{owner.organization_id}/members/{admin.user_id}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    assert demoted.status_code == 200
    assert client.post("/api/v1/queues", json={"name": "b"}, headers=key).status_code == 403
    assert client.get("/api/v1/queues", headers=key).status_code == 200


def test_a_key_cannot_grant_the_owner_role(client: FlaskClient, owner: Account) -> None:
    key = key_headers(create_key(client, owner, ["org:admin"]))
    response = client.post(
        f"/api/v1/organizations/{owner.organization_id}/members",
        json={"email": "new-owner@example.com", "password": PASSWORD, "role": "owner"},
        headers=key,
    )
    assert response.status_code == 403


def test_a_member_cannot_promote_themselves(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    member = auth.member(owner, "member")
    response = client.patch(
        f"/api/v1/organizations/{owner.organization_id}/members/{member.user_id}",
        json={"role": "admin"},
        headers=member.headers,
    )
    assert response.status_code == 403
