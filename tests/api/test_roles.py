"""The role matrix: a viewer reads, a member writes queues and jobs, an admin does all."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Account, Auth
from tests.support.calls import ADMIN_WRITES, QUEUE_AND_JOB_WRITES, READS, their_objects


@pytest.fixture
def world(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """A project, a queue and a job of ``owner``'s organization."""
    return their_objects(client, owner)


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
