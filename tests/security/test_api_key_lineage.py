"""API keys minted by API keys: the whole creator chain caps, revokes and expires them.

An admin creates K1; K1 creates K2; K2 creates K3.  Whatever happens to the admin
(demotion, removal, deletion) or to a key of the chain (revocation, expiry) reaches
every key minted under them.  ``tests/grpc/test_grpc_auth.py`` checks the same over gRPC.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select, text

from app.config import Settings
from app.db import session_factory, session_scope
from app.errors import Unauthenticated
from app.models import ApiKey, User
from app.services import apikeys as apikey_service
from app.services.auth import actor_for_api_key
from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import create_key, key_headers
from tests.support.workers import wait_for

ALL_SCOPES = [
    "queue:read",
    "queue:write",
    "job:read",
    "job:write",
    "worker:read",
    "worker:write",
    "apikey:admin",
    "org:admin",
]


def mint(
    client: FlaskClient, headers: dict[str, str], scopes: list[str] = ALL_SCOPES, **extra: Any
) -> Any:
    """Create an API key with any credentials (a user's token or another key)."""
    body = {"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": scopes, **extra}
    return client.post("/api/v1/api-keys", json=body, headers=headers)


def minted(client: FlaskClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    response = mint(client, headers, **extra)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


@pytest.fixture
def admin(auth: Auth, owner: Account) -> Account:
    """An admin of ``owner``'s organization."""
    return auth.member(owner, "admin")


@pytest.fixture
def chain(client: FlaskClient, admin: Account) -> list[dict[str, Any]]:
    """K1 created by ``admin`` with every scope, K2 by K1, K3 by K2."""
    k1 = create_key(client, admin, ALL_SCOPES, name="k1")
    k2 = minted(client, key_headers(k1))
    k3 = minted(client, key_headers(k2))
    return [k1, k2, k3]


def create_queue(client: FlaskClient, headers: dict[str, str]) -> Any:
    return client.post(
        "/api/v1/queues", json={"name": f"q-{uuid.uuid4().hex[:8]}"}, headers=headers
    )


def set_role(client: FlaskClient, org: str, user_id: str, role: str, headers: dict) -> Any:
    return client.patch(
        f"/api/v1/organizations/{org}/members/{user_id}", json={"role": role}, headers=headers
    )


def test_a_minted_key_records_the_user_and_key_behind_it(
    client: FlaskClient, admin: Account, chain: list[dict[str, Any]]
) -> None:
    k1, k2, k3 = chain
    assert k1["created_by_id"] == admin.user_id and k1["created_by_key_id"] is None
    assert k2["created_by_id"] == admin.user_id and k2["created_by_key_id"] == k1["id"]
    assert k3["created_by_id"] == admin.user_id and k3["created_by_key_id"] == k2["id"]


def test_demoting_the_creator_caps_every_key_minted_under_them(
    client: FlaskClient, auth: Auth, owner: Account, admin: Account, chain: list[dict[str, Any]]
) -> None:
    member = auth.member(owner, "member")
    org = owner.organization_id
    for key in chain:
        assert create_queue(client, key_headers(key)).status_code == 201
    assert set_role(client, org, admin.user_id, "viewer", owner.headers).status_code == 200

    for key in chain:
        headers = key_headers(key)
        assert client.get("/api/v1/queues", headers=headers).status_code == 200
        assert create_queue(client, headers).status_code == 403
        assert set_role(client, org, member.user_id, "admin", headers).status_code == 403
        assert mint(client, headers, ["queue:read"]).status_code == 403
    members = client.get(f"/api/v1/organizations/{org}/members", headers=owner.headers).json
    assert {m["id"]: m["role"] for m in members["members"]}[member.user_id] == "member"


def test_a_key_cannot_mint_scopes_its_capped_chain_lacks(
    client: FlaskClient, owner: Account, admin: Account, chain: list[dict[str, Any]]
) -> None:
    org = owner.organization_id
    assert set_role(client, org, admin.user_id, "member", owner.headers).status_code == 200
    # apikey:admin is gone with the demotion, so K2 can mint nothing at all any more.
    assert mint(client, key_headers(chain[1]), ["queue:read"]).status_code == 403
    assert set_role(client, org, admin.user_id, "admin", owner.headers).status_code == 200
    # Promoted back, the chain's scopes apply again: the keys were capped, never cut down.
    assert create_queue(client, key_headers(chain[2])).status_code == 201


def test_removing_the_creator_revokes_every_key_minted_under_them(
    client: FlaskClient, owner: Account, admin: Account, chain: list[dict[str, Any]]
) -> None:
    other = create_key(client, owner, ["queue:read"])
    removed = client.delete(
        f"/api/v1/organizations/{owner.organization_id}/members/{admin.user_id}",
        headers=owner.headers,
    )
    assert removed.status_code == 204
    for key in chain:
        headers = key_headers(key)
        assert client.get("/api/v1/queues", headers=headers).status_code == 401
        assert mint(client, headers, ["org:admin"]).status_code == 401
        shown = client.get(f"/api/v1/api-keys/{key['id']}", headers=owner.headers).json
        assert shown["revoked_at"] is not None
    assert client.get("/api/v1/queues", headers=key_headers(other)).status_code == 200


def test_revoking_a_key_revokes_what_it_minted_and_nothing_else(
    client: FlaskClient, admin: Account, chain: list[dict[str, Any]]
) -> None:
    k1, k2, k3 = chain
    sibling = minted(client, key_headers(k1))
    own = create_key(client, admin, ["queue:read"])
    assert (
        client.post(f"/api/v1/api-keys/{k2['id']}/revoke", headers=admin.headers).status_code == 204
    )
    for key in (k2, k3):
        response = client.get("/api/v1/queues", headers=key_headers(key))
        assert response.status_code == 401
        assert "revoked" in response.json["error"]
    for key in (k1, sibling, own):
        assert client.get("/api/v1/queues", headers=key_headers(key)).status_code == 200


def test_a_minted_key_never_outlives_the_key_that_minted_it(
    client: FlaskClient, admin: Account
) -> None:
    parent_expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    parent = create_key_expiring(client, admin, parent_expiry)
    inherited = minted(client, key_headers(parent))
    assert datetime.fromisoformat(inherited["expires_at"]) == parent_expiry
    sooner = parent_expiry - timedelta(minutes=30)
    shorter = minted(client, key_headers(parent), expires_at=sooner.isoformat())
    assert datetime.fromisoformat(shorter["expires_at"]) == sooner
    later = mint(
        client, key_headers(parent), expires_at=(parent_expiry + timedelta(seconds=1)).isoformat()
    )
    assert later.status_code == 400
    assert "expires_at" in later.json["errors"]
    grandchild = minted(client, key_headers(inherited))
    assert datetime.fromisoformat(grandchild["expires_at"]) == parent_expiry


def create_key_expiring(client: FlaskClient, account: Account, expires_at: datetime) -> dict:
    response = client.post(
        "/api/v1/api-keys",
        json={"name": "expiring", "scopes": ALL_SCOPES, "expires_at": expires_at.isoformat()},
        headers=account.headers,
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_a_key_whose_creator_row_is_gone_authenticates_nobody(
    client: FlaskClient, admin: Account, chain: list[dict[str, Any]], settings: Settings
) -> None:
    # Deleted behind the service's back (an operator's SQL, a future code path): the
    # key must not fall back to its bare scopes.
    with session_scope(settings.database_url) as session:
        session.execute(delete(User).where(User.id == uuid.UUID(admin.user_id)))
    for key in chain:
        response = client.get("/api/v1/queues", headers=key_headers(key))
        assert response.status_code == 401
        assert mint(client, key_headers(key), ["org:admin"]).status_code == 401


def _waits_on_a_row_lock(database_url: str) -> bool:
    with session_scope(database_url) as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def test_a_key_minted_while_its_parent_is_revoked_is_revoked_too(
    client: FlaskClient, admin: Account, settings: Settings
) -> None:
    """Revocation waits for a concurrent mint to commit, then reaches the new key too."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time; the race needs PostgreSQL's row locks")
    parent = create_key(client, admin, ALL_SCOPES)
    # Used once now, so the mint below does not also write the parent's last_used_at.
    assert client.get("/api/v1/queues", headers=key_headers(parent)).status_code == 200
    minting = session_factory(settings.database_url)()
    revoked = threading.Event()

    def revoke() -> None:
        with session_scope(settings.database_url) as session:
            actor = actor_for_api_key(session, parent["key"])
            apikey_service.revoke_api_key(session, actor=actor, api_key_id=parent["id"])
        revoked.set()

    revoker = threading.Thread(target=revoke)
    try:
        child = apikey_service.create_api_key(
            minting,
            actor=actor_for_api_key(minting, parent["key"]),
            name="racing",
            scopes=["queue:read"],
        )
        revoker.start()
        # Either the revoker finishes at once (and must have missed nothing) or it waits
        # for the mint's lock on the parent row; both must end with the child revoked.
        wait_for(
            lambda: revoked.is_set() or _waits_on_a_row_lock(settings.database_url),
            30,
            "the revocation neither finished nor waited for the mint",
        )
        minting.commit()
        revoker.join(30)
        assert revoked.is_set()
    finally:
        minting.close()
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == child.api_key.prefix))
        assert row is not None and row.revoked_at is not None
        with pytest.raises(Unauthenticated):
            actor_for_api_key(session, child.key)


def test_a_revoked_parent_cannot_mint(client: FlaskClient, admin: Account) -> None:
    parent = create_key(client, admin, ALL_SCOPES)
    assert (
        client.delete(f"/api/v1/api-keys/{parent['id']}", headers=admin.headers).status_code == 204
    )
    assert mint(client, key_headers(parent), ["queue:read"]).status_code == 401


def test_login_of_the_admin_still_works_after_the_chain_is_revoked(
    client: FlaskClient, auth: Auth, admin: Account, chain: list[dict[str, Any]]
) -> None:
    client.post(f"/api/v1/api-keys/{chain[0]['id']}/revoke", headers=admin.headers)
    assert auth.login(admin.email, PASSWORD)["access_token"]
