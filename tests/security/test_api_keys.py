"""/api-keys: the key is shown once, stored as a hash, listed without secrets, revocable."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.config import Settings
from app.db import session_scope
from app.models import ApiKey
from app.services.auth import actor_for_api_key, hash_api_key_secret
from tests.conftest import Account
from tests.security.support import create_key, key_headers

KEY_FORMAT = re.compile(r"^tf_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")


def test_create_shows_the_key_once_and_stores_only_its_hash(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    created = create_key(client, owner, ["job:read", "queue:read"], name="deploy bot")
    match = KEY_FORMAT.match(created["key"])
    assert match, created["key"]
    assert created["prefix"] == match.group(1)
    assert created["scopes"] == ["job:read", "queue:read"]
    assert created["name"] == "deploy bot"
    assert created["organization_id"] == owner.organization_id
    assert created["created_by_id"] == owner.user_id
    assert created["revoked_at"] is None and created["last_used_at"] is None
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
        assert row is not None
        assert row.key_hash == hash_api_key_secret(match.group(2))
        assert match.group(2) not in (row.key_hash, row.prefix, row.name)
    shown = client.get(f"/api/v1/api-keys/{created['id']}", headers=owner.headers).json
    assert "key" not in shown
    assert shown == {k: v for k, v in created.items() if k != "key"}


def test_the_key_authenticates_as_its_organization(client: FlaskClient, owner: Account) -> None:
    key = create_key(client, owner, ["queue:read"])
    response = client.get("/api/v1/organizations/current", headers=key_headers(key))
    assert response.status_code == 200
    assert response.json["id"] == owner.organization_id


def test_list_is_paginated_and_never_shows_secrets(client: FlaskClient, owner: Account) -> None:
    for n in range(3):
        create_key(client, owner, ["job:read"], name=f"k{n}")
    page = client.get("/api/v1/api-keys?limit=2", headers=owner.headers).json
    assert page["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    assert [k["name"] for k in page["api_keys"]] == ["k2", "k1"]
    assert all("key" not in k and "key_hash" not in k for k in page["api_keys"])
    assert client.get("/api/v1/api-keys?limit=101", headers=owner.headers).status_code == 400


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda c, i, h: c.delete(f"/api/v1/api-keys/{i}", headers=h), id="delete"),
        pytest.param(lambda c, i, h: c.post(f"/api/v1/api-keys/{i}/revoke", headers=h), id="post"),
    ],
)
def test_revoked_key_is_401_revoked(client: FlaskClient, owner: Account, revoke) -> None:
    key = create_key(client, owner, ["queue:read"])
    assert client.get("/api/v1/queues", headers=key_headers(key)).status_code == 200
    assert revoke(client, key["id"], owner.headers).status_code == 204
    response = client.get("/api/v1/queues", headers=key_headers(key))
    assert response.status_code == 401
    assert "revoked" in response.json["error"]
    shown = client.get(f"/api/v1/api-keys/{key['id']}", headers=owner.headers).json
    assert shown["revoked_at"] is not None
    again = revoke(client, key["id"], owner.headers)
    assert again.status_code == 204
    assert client.get(f"/api/v1/api-keys/{key['id']}", headers=owner.headers).json == shown


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "scopes": ["job:read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["job:read"]}, "name"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["job:delete"]}, "scopes"),
        ({"name": "k"}, "scopes"),
        (
            {"name": "k", "scopes": ["job:read"], "expires_at": "2020-01-01T00:00:00+00:00"},
            "expires_at",
        ),
        ({"name": "k", "scopes": ["job:read"], "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
    ],
)
def test_create_validates_its_input(
    client: FlaskClient, owner: Account, body: dict, field: str
) -> None:
    response = client.post("/api/v1/api-keys", json=body, headers=owner.headers)
    assert response.status_code == 400, response.json
    assert field in response.json["errors"]


def test_expiring_key_works_until_it_expires(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = client.post(
        "/api/v1/api-keys",
        json={"name": "temp", "scopes": ["job:read"], "expires_at": expires},
        headers=owner.headers,
    ).json
    assert client.get("/api/v1/jobs", headers=key_headers(key)).status_code == 200
    with session_scope(settings.database_url) as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(key["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = client.get("/api/v1/jobs", headers=key_headers(key))
    assert response.status_code == 401
    assert "expired" in response.json["error"]


def test_last_used_is_written_at_most_once_a_minute(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    key = create_key(client, owner, ["job:read"])
    with session_scope(settings.database_url) as session:
        actor_for_api_key(session, key["key"])
        first = session.get(ApiKey, uuid.UUID(key["id"]))
        assert first is not None and first.last_used_at is not None
        stamped = first.last_used_at
    with session_scope(settings.database_url) as session:
        actor_for_api_key(session, key["key"])
        assert not session.dirty
        row = session.get(ApiKey, uuid.UUID(key["id"]))
        assert row is not None and row.last_used_at == stamped
        row.last_used_at = stamped - timedelta(seconds=61)
    with session_scope(settings.database_url) as session:
        actor_for_api_key(session, key["key"])
        row = session.get(ApiKey, uuid.UUID(key["id"]))
        assert row is not None and row.last_used_at is not None and row.last_used_at > stamped


def test_requests_record_last_use(client: FlaskClient, owner: Account) -> None:
    key = create_key(client, owner, ["job:read"])
    assert client.get("/api/v1/jobs", headers=key_headers(key)).status_code == 200
    shown = client.get(f"/api/v1/api-keys/{key['id']}", headers=owner.headers).json
    assert shown["last_used_at"] is not None
