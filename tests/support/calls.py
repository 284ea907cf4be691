"""REST calls shared by the role, tenancy and OWASP suites, and the objects they address.

Each call takes the test client, a dict of objects (``their_objects``) and the
caller's headers, and returns the response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account

Call = Callable[[FlaskClient, dict[str, Any], dict[str, str]], Any]


def their_objects(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """A project, a queue and a job of ``owner``'s organization, with its ids."""
    h = owner.headers
    project = client.post("/api/v1/projects", json={"name": "secret"}, headers=h).json
    queue = client.post("/api/v1/queues", json={"name": "secret"}, headers=h).json
    job = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=h
    ).json
    return {
        "org": owner.organization_id,
        "owner_id": owner.user_id,
        "project": project,
        "queue": queue,
        "job": job,
    }


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


# Calls that address one object by id (list calls are checked separately).
BY_ID = {
    name: call
    for name, call in (READS | QUEUE_AND_JOB_WRITES | ADMIN_WRITES).items()
    if not name.startswith(("list queues", "list jobs", "list projects", "create", "submit"))
}
BY_ID.update(
    {
        "delete queue": lambda c, w, h: c.delete(f"/api/v1/queues/{w['queue']['id']}", headers=h),
        "retry job": lambda c, w, h: c.post(f"/api/v1/jobs/{w['job']['id']}/retry", headers=h),
        "remove member": lambda c, w, h: c.delete(
            f"/api/v1/organizations/{w['org']}/members/{w['owner_id']}", headers=h
        ),
        "change member role": lambda c, w, h: c.patch(
            f"/api/v1/organizations/{w['org']}/members/{w['owner_id']}",
            json={"role": "viewer"},
            headers=h,
        ),
        "submit to their queue": lambda c, w, h: c.post(
            "/api/v1/jobs", json={"queue_id": w["queue"]["id"], "job_type": "echo"}, headers=h
        ),
        "queue in their project": lambda c, w, h: c.post(
            "/api/v1/queues", json={"name": "x", "project_id": w["project"]["id"]}, headers=h
        ),
    }
)
