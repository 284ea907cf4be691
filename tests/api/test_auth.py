"""/auth: register, login, refresh, validate, logout, and every way a token fails."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account, Auth
from tests.support.tokens import mint


def test_register_creates_organization_owner_and_default_project(
    client: FlaskClient, auth: Auth
) -> None:
    owner = auth.register("Initech")
    org = client.get("/api/v1/organizations/current", headers=owner.headers)
    assert org.status_code == 200
    assert org.json["name"] == "Initech"
    assert org.json["id"] == owner.organization_id
    projects = client.get("/api/v1/projects", headers=owner.headers).json
    assert [p["name"] for p in projects["projects"]] == ["default"]
    members = client.get(
        f"/api/v1/organizations/{owner.organization_id}/members", headers=owner.headers
    ).json
    assert [(m["email"], m["role"]) for m in members["members"]] == [(owner.email, "owner")]


def test_register_twice_with_one_email_conflicts(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/auth/register",
        json={"email": owner.email.upper(), "password": PASSWORD, "organization_name": "Again"},
    )
    assert response.status_code == 409
    assert response.json == {"error": "A user with this email already exists", "status_code": 409}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "organization_name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "organization_name": "A"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129, "organization_name": "A"}, "password"),
        (
            {"email": "a@example.com", "password": PASSWORD, "organization_name": ""},
            "organization_name",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "organization_name": "x" * 101},
            "organization_name",
        ),
        ({"email": "a@example.com", "password": PASSWORD}, "organization_name"),
        (
            {
                "email": "a@example.com",
                "password": PASSWORD,
                "organization_name": "A",
                "role": "owner",
            },
            "role",
        ),
        ({"email": 5, "password": PASSWORD, "organization_name": "A"}, "email"),
    ],
)
def test_register_validates_every_field(client: FlaskClient, body: dict, field: str) -> None:
    response = client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 400
    assert response.json["status_code"] == 400
    assert field in response.json["errors"]


def test_login_returns_bearer_tokens(client: FlaskClient, owner: Account) -> None:
    response = client.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] and body["refresh_token"]


@pytest.mark.parametrize("which", ["wrong-password", "unknown-email"])
def test_login_with_bad_credentials_is_401(client: FlaskClient, owner: Account, which: str) -> None:
    email = owner.email if which == "wrong-password" else "nobody@example.com"
    password = "wrong password" if which == "wrong-password" else PASSWORD
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert response.json == {"error": "Invalid email or password", "status_code": 401}


def test_validate_describes_the_token(client: FlaskClient, owner: Account) -> None:
    response = client.get("/api/v1/auth/validate", headers=owner.headers)
    assert response.status_code == 200
    body = response.json
    assert body["valid"] is True
    assert body["user_id"] == owner.user_id
    assert body["organization_id"] == owner.organization_id
    assert body["expires_at"].endswith("+00:00")


def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    client: FlaskClient, owner: Account
) -> None:
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert first.status_code == 200
    assert first.json["token_type"] == "Bearer"
    fresh = {"Authorization": f"Bearer {first.json['access_token']}"}
    assert client.get("/api/v1/auth/validate", headers=fresh).status_code == 200
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert again.status_code == 401
    assert "revoked" in again.json["error"]


def test_refresh_refuses_an_access_token(client: FlaskClient, owner: Account) -> None:
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.access_token})
    assert response.status_code == 401
    assert response.json["error"] == "Not a refresh token"


def test_refresh_token_is_not_an_access_token(client: FlaskClient, owner: Account) -> None:
    headers = {"Authorization": f"Bearer {owner.refresh_token}"}
    response = client.get("/api/v1/queues", headers=headers)
    assert response.status_code == 401


def test_logout_revokes_access_and_refresh_tokens(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": owner.refresh_token}, headers=owner.headers
    )
    assert response.status_code == 204
    revoked = client.get("/api/v1/queues", headers=owner.headers)
    assert revoked.status_code == 401
    assert revoked.json == {"error": "The token has been revoked", "status_code": 401}
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert refresh.status_code == 401


def _unsigned(token: str) -> str:
    _header, payload, _signature = token.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{none_header.decode().rstrip('=')}.{payload}."


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["org_id"] = "00000000-0000-0000-0000-000000000000"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda a: {}, id="none"),
        pytest.param(lambda a: {"Authorization": "Bearer garbage"}, id="garbage"),
        pytest.param(lambda a: {"Authorization": a.access_token}, id="no-scheme"),
        pytest.param(
            lambda a: {"Authorization": f"Bearer {_unsigned(a.access_token)}"}, id="alg-none"
        ),
        pytest.param(
            lambda a: {"Authorization": f"Bearer {_tampered(a.access_token)}"}, id="tampered"
        ),
        pytest.param(lambda a: {"X-API-Key": "tf_nope_nope"}, id="unknown-api-key"),
        pytest.param(lambda a: {"X-API-Key": "garbage"}, id="malformed-api-key"),
    ],
)
def test_bad_credentials_are_401_in_the_error_shape(
    client: FlaskClient, owner: Account, make_headers
) -> None:
    response = client.get("/api/v1/queues", headers=make_headers(owner))
    assert response.status_code == 401
    assert set(response.json) == {"error", "status_code"}
    assert response.json["status_code"] == 401


def test_expired_token_is_401(app: Flask, client: FlaskClient, owner: Account) -> None:
    token = mint(app, owner.user_id, expires_in=timedelta(seconds=-5))
    response = client.get("/api/v1/queues", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json["error"]


def test_token_of_a_removed_user_is_401(client: FlaskClient, auth: Auth, owner: Account) -> None:
    member = auth.member(owner, "member")
    removed = client.delete(
        f"/api/v1/organizations/{owner.organization_id}/members/{member.user_id}",
        headers=owner.headers,
    )
    assert removed.status_code == 204
    assert client.get("/api/v1/queues", headers=member.headers).status_code == 401
