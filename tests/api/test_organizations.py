"""/organizations: the caller's organization and its members."""

from __future__ import annotations

import uuid

from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account, Auth


def _members_url(account: Account) -> str:
    return f"/api/v1/organizations/{account.organization_id}/members"


def test_get_and_rename_organization(client: FlaskClient, owner: Account) -> None:
    url = f"/api/v1/organizations/{owner.organization_id}"
    assert client.get(url, headers=owner.headers).json["name"] == "Acme"
    renamed = client.patch(
        url, json={"name": "Acme Corp", "settings": {"tier": "gold"}}, headers=owner.headers
    )
    assert renamed.status_code == 200
    assert renamed.json["name"] == "Acme Corp"
    assert renamed.json["settings"] == {"tier": "gold"}


def test_current_organization_is_renamed_by_admins_only(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    url = "/api/v1/organizations/current"
    renamed = client.patch(url, json={"name": "Acme Two"}, headers=owner.headers)
    assert (renamed.status_code, renamed.json["name"]) == (200, "Acme Two")
    assert renamed.json["id"] == owner.organization_id
    assert client.patch(url, json={"name": ""}, headers=owner.headers).status_code == 400
    member = auth.member(owner, "member")
    assert client.patch(url, json={"name": "Mine"}, headers=member.headers).status_code == 403
    assert client.get(url, headers=owner.headers).json["name"] == "Acme Two"


def test_organization_update_validates(client: FlaskClient, owner: Account) -> None:
    url = f"/api/v1/organizations/{owner.organization_id}"
    assert client.patch(url, json={"name": ""}, headers=owner.headers).status_code == 400
    assert client.patch(url, json={"name": "x" * 101}, headers=owner.headers).status_code == 400
    assert client.patch(url, json={"settings": []}, headers=owner.headers).status_code == 400
    assert (
        client.patch(url, json={"id": str(uuid.uuid4())}, headers=owner.headers).status_code == 400
    )


def test_members_add_list_change_role_remove(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    added = client.post(
        _members_url(owner),
        json={"email": "dev@example.com", "password": PASSWORD, "role": "member"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    assert added.json["role"] == "member"
    assert "password" not in added.json and "password_hash" not in added.json
    listed = client.get(_members_url(owner), headers=owner.headers).json
    assert listed["pagination"] == {"page": 1, "limit": 10, "total": 2, "pages": 1}
    promoted = client.patch(
        f"{_members_url(owner)}/{added.json['id']}", json={"role": "admin"}, headers=owner.headers
    )
    assert promoted.status_code == 200 and promoted.json["role"] == "admin"
    removed = client.delete(f"{_members_url(owner)}/{added.json['id']}", headers=owner.headers)
    assert removed.status_code == 204
    assert client.get(_members_url(owner), headers=owner.headers).json["pagination"]["total"] == 1


def test_member_role_must_be_known(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        _members_url(owner),
        json={"email": "x@example.com", "password": PASSWORD, "role": "superuser"},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert "role" in response.json["errors"]


def test_admin_cannot_grant_owner(client: FlaskClient, auth: Auth, owner: Account) -> None:
    admin = auth.member(owner, "admin")
    response = client.post(
        _members_url(owner),
        json={"email": "boss@example.com", "password": PASSWORD, "role": "owner"},
        headers=admin.headers,
    )
    assert response.status_code == 403


def test_last_owner_cannot_be_demoted_and_nobody_removes_themselves(
    client: FlaskClient, owner: Account
) -> None:
    url = f"{_members_url(owner)}/{owner.user_id}"
    demoted = client.patch(url, json={"role": "member"}, headers=owner.headers)
    assert demoted.status_code == 409
    assert client.delete(url, headers=owner.headers).status_code == 409


def test_member_and_viewer_cannot_manage_members(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    for role in ("member", "viewer"):
        account = auth.member(owner, role)
        response = client.post(
            _members_url(owner),
            json={"email": f"new-{role}@example.com", "password": PASSWORD, "role": "viewer"},
            headers=account.headers,
        )
        assert response.status_code == 403
        assert client.get(_members_url(owner), headers=account.headers).status_code == 200


def test_added_member_can_log_in_with_the_given_password(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    member = auth.member(owner, "viewer")
    assert client.get("/api/v1/auth/validate", headers=member.headers).json["role"] == "viewer"


def test_removing_a_member_revokes_their_api_keys(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    admin = auth.member(owner, "admin")
    created = client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["queue:read"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.json
    key_headers = {"X-API-Key": created.json["key"]}
    assert client.get("/api/v1/queues", headers=key_headers).status_code == 200
    removed = client.delete(f"{_members_url(owner)}/{admin.user_id}", headers=owner.headers)
    assert removed.status_code == 204
    response = client.get("/api/v1/queues", headers=key_headers)
    assert response.status_code == 401
    assert "revoked" in response.json["error"]
