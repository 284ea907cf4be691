"""The role matrix: a viewer reads, a member writes queues and jobs, an admin does all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account, Auth

Call = Callable[[FlaskClient, dict[str, Any], dict[str, str]], Any]


@pytest.fixture
def world(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """A project, a queue and a job of ``owner``'s organization."""
    h = owner.headers
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=h).json
    queue = client.post("/api/v1/queues", json={"name": "q"}, headers=h).json
    job = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=h
    ).json
    return {"org": owner.organization_id, "project": project, "queue": queue, "job": job}


READS: dict[str, Call] = {
    "list queues": lambda c, w, h: c.get("/api/v1/queues", headers=h),
    "get queue": lambda c, w, h: c.get(f"/api/v1/queues/{w['queue']['id']}", headers=h),
    "queue stats": lambda c, w, h: c.get(f"/api/v1/queues/{w['queue']['id']}/stats", headers=h),
    "list jobs": lambda c, w, h: c.get("/api/v1/jobs", headers=h),
    "get job": lambda c, w, h: c.get(f"/api/v1/jobs/{w['job']['id']}", headers=h),
    "job stats": lambda c, w, h: c.get(f"/api/v1/jobs/{w['job']['id']}/stats", headers=h),
    "list projects": lambda c, w, h: c.get("/api/v1/projects", headers=h),
    "get project": lambda c, w, h: c.get(f"/api/v1/projects/{w['project']['id']}", headers=h),
    "get org": lambda c, w, h: c.get(f"/api/v1/organizations/{w['org']}", headers=h),
    "list members": lambda c, w, h: c.get(f"/api/v1/organizations/{w['org']}/members", headers=h),
}

QUEUE_AND_JOB_WRITES: dict[str, Call] = {
    "create queue": lambda c, w, h: c.post("/api/v1/queues", json={"name": "new"}, headers=h),
    "patch queue": lambda c, w, h: c.patch(
        f"/api/v1/queues/{w['queue']['id']}", json={"priority": 2}, headers=h
    ),
    "put queue": lambda c, w, h: c.put(
        f"/api/v1/queues/{w['queue']['id']}", json={"name": "q"}, headers=h
    ),
    "pause queue": lambda c, w, h: c.post(f"/api/v1/queues/{w['queue']['id']}/pause", headers=h),
    "resume queue": lambda c, w, h: c.post(f"/api/v1/queues/{w['queue']['id']}/resume", headers=h),
    "submit job": lambda c, w, h: c.post(
        "/api/v1/jobs", json={"queue_id": w["queue"]["id"], "job_type": "echo"}, headers=h
    ),
    "cancel job": lambda c, w, h: c.post(f"/api/v1/jobs/{w['job']['id']}/cancel", headers=h),
    "create project": lambda c, w, h: c.post("/api/v1/projects", json={"name": "new"}, headers=h),
    "patch project": lambda c, w, h: c.patch(
        f"/api/v1/projects/{w['project']['id']}", json={"description": "d"}, headers=h
    ),
    "delete project": lambda c, w, h: c.delete(f"/api/v1/projects/{w['project']['id']}", headers=h),
}

ADMIN_WRITES: dict[str, Call] = {
    "rename org": lambda c, w, h: c.patch(
        f"/api/v1/organizations/{w['org']}", json={"name": "X"}, headers=h
    ),
    "add member": lambda c, w, h: c.post(
        f"/api/v1/organizations/{w['org']}/members",
        json={"email": "n@example.com", "password": PASSWORD, "role": "viewer"},
        headers=h,
    ),
}


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("role", ["viewer", "member", "admin"])
def test_every_role_reads(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, role: str, name: str
) -> None:
    account = auth.member(owner, role)
    assert READS[name](client, world, account.headers).status_code == 200


@pytest.mark.parametrize("name", sorted(QUEUE_AND_JOB_WRITES | ADMIN_WRITES))
def test_viewer_cannot_write(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, name: str
) -> None:
    viewer = auth.member(owner, "viewer")
    response = (QUEUE_AND_JOB_WRITES | ADMIN_WRITES)[name](client, world, viewer.headers)
    assert response.status_code == 403
    assert response.json["status_code"] == 403
    assert "permission" in response.json["error"]


@pytest.mark.parametrize("name", sorted(QUEUE_AND_JOB_WRITES))
@pytest.mark.parametrize("role", ["member", "admin"])
def test_member_and_admin_write_queues_and_jobs(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, role: str, name: str
) -> None:
    account = auth.member(owner, role)
    assert QUEUE_AND_JOB_WRITES[name](client, world, account.headers).status_code in (200, 201, 204)


@pytest.mark.parametrize("name", sorted(ADMIN_WRITES))
def test_only_admins_manage_the_organization(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, name: str
) -> None:
    member = auth.member(owner, "member")
    assert ADMIN_WRITES[name](client, world, member.headers).status_code == 403
    admin = auth.member(owner, "admin")
    assert ADMIN_WRITES[name](client, world, admin.headers).status_code in (200, 201)


def test_viewer_write_changes_nothing(
    client: FlaskClient, auth: Auth, owner: Account, world: dict
) -> None:
    viewer = auth.member(owner, "viewer")
    client.post(f"/api/v1/jobs/{world['job']['id']}/cancel", headers=viewer.headers)
    job = client.get(f"/api/v1/jobs/{world['job']['id']}", headers=owner.headers).json
    assert job["status"] == "pending"
