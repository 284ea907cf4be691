"""Authentication from call metadata: access tokens, API keys, and every way they fail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from grpcsupport import (
    Contract,
    Metadata,
    api_key,
    assert_status,
    bearer,
    create_api_key,
    rpc_error,
)
from sqlalchemy import update

from app.config import Settings
from app.db import session_scope
from app.models import ApiKey, User
from tests.conftest import PASSWORD
from tests.support.tokens import mint, signing_key

if TYPE_CHECKING:
    from tests.conftest import Account

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def list_queues(grpc_stub: SimpleNamespace, contract: Contract, metadata: Metadata | None) -> Any:
    return grpc_stub.ListQueues(contract.ListQueuesRequest(), metadata=metadata)


def test_an_access_token_authenticates(
    grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata, queue: Any
) -> None:
    assert list_queues(grpc_stub, contract, owner_md).total == 1


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        (None, "Authentication required"),
        ((("authorization", "Bearer not.a.jwt"),), "Invalid token"),
        ((("authorization", "Bearer "),), "Bearer"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "Bearer"),
        ((("x-api-key", "nonsense"),), "Malformed API key"),
        ((("x-api-key", "tf_abc123_wrongsecret"),), "Invalid API key"),
    ],
)
def test_missing_or_garbage_credentials_are_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, metadata: Metadata | None, fragment: str
) -> None:
    error = rpc_error(list_queues, grpc_stub, contract, metadata)
    assert_status(error, UNAUTHENTICATED, fragment)


def test_a_refresh_token_is_not_an_access_token(
    grpc_stub: SimpleNamespace, contract: Contract, owner: Account
) -> None:
    error = rpc_error(list_queues, grpc_stub, contract, bearer(owner.refresh_token))
    assert_status(error, UNAUTHENTICATED, "Not an access token")


def test_a_token_revoked_by_logout_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, client: FlaskClient, owner: Account
) -> None:
    assert list_queues(grpc_stub, contract, bearer(owner.access_token)).total == 0
    assert client.post("/api/v1/auth/logout", headers=owner.headers).status_code == 204
    error = rpc_error(list_queues, grpc_stub, contract, bearer(owner.access_token))
    assert_status(error, UNAUTHENTICATED, "revoked")


def test_reusing_a_rotated_refresh_token_revokes_the_sessions_access_tokens(
    grpc_stub: SimpleNamespace, contract: Contract, client: FlaskClient, owner: Account
) -> None:
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert rotated.status_code == 200
    fresh = rotated.json["access_token"]
    assert list_queues(grpc_stub, contract, bearer(fresh)).total == 0
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": owner.refresh_token})
    assert reuse.status_code == 401
    error = rpc_error(list_queues, grpc_stub, contract, bearer(fresh))
    assert_status(error, UNAUTHENTICATED, "revoked")


def test_an_expired_token_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, app: Flask, owner: Account
) -> None:
    token = mint(app, owner.user_id, expires_in=timedelta(seconds=-30))
    error = rpc_error(list_queues, grpc_stub, contract, bearer(token))
    assert_status(error, UNAUTHENTICATED, "expired")


def test_a_token_signed_with_another_key_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, owner: Account
) -> None:
    now = datetime.now(UTC)
    claims = {"sub": owner.user_id, "type": "access", "jti": uuid.uuid4().hex, "iat": now}
    forged = jwt.encode({**claims, "exp": now + timedelta(minutes=5)}, "x" * 32, "HS256")
    error = rpc_error(list_queues, grpc_stub, contract, bearer(forged))
    assert_status(error, UNAUTHENTICATED, "Invalid token")


def test_a_disabled_users_token_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, owner: Account, settings: Settings
) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(owner.user_id)).values(is_active=False)
        )
    error = rpc_error(list_queues, grpc_stub, contract, bearer(owner.access_token))
    assert_status(error, UNAUTHENTICATED)


def test_an_api_key_authenticates_within_its_scopes(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner: Account,
    settings: Settings,
    queue: Any,
) -> None:
    key = api_key(create_api_key(settings.database_url, owner.organization_id, ["queue:read"]))
    assert list_queues(grpc_stub, contract, key).total == 1
    request = contract.CreateQueueRequest(name="by-key")
    error = rpc_error(grpc_stub.CreateQueue, request, metadata=key)
    assert_status(error, grpc.StatusCode.PERMISSION_DENIED, "queue:write")


def test_a_revoked_api_key_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, owner: Account, settings: Settings
) -> None:
    raw = create_api_key(settings.database_url, owner.organization_id, ["queue:read"])
    with session_scope(settings.database_url) as session:
        session.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
    error = rpc_error(list_queues, grpc_stub, contract, api_key(raw))
    assert_status(error, UNAUTHENTICATED, "revoked")


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


def _mint(client: FlaskClient, headers: dict[str, str]) -> str:
    body = {"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": ALL_SCOPES}
    response = client.post("/api/v1/api-keys", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return str(response.json["key"])


def test_keys_minted_by_keys_follow_their_creators_demotion_and_removal(
    grpc_stub: SimpleNamespace, contract: Contract, client: FlaskClient, auth: Any, owner: Account
) -> None:
    admin = auth.member(owner, "admin")
    k1 = _mint(client, admin.headers)
    k2 = _mint(client, {"X-API-Key": k1})
    for key in (k1, k2):  # the server's actor cache now holds both keys
        assert list_queues(grpc_stub, contract, api_key(key)).total == 0
    member_url = f"/api/v1/organizations/{owner.organization_id}/members/{admin.user_id}"
    demoted = client.patch(member_url, json={"role": "viewer"}, headers=owner.headers)
    assert demoted.status_code == 200
    for key in (k1, k2):
        assert list_queues(grpc_stub, contract, api_key(key)).total == 0
        request = contract.CreateQueueRequest(name=f"by-{key[3:9]}")
        error = rpc_error(grpc_stub.CreateQueue, request, metadata=api_key(key))
        assert_status(error, grpc.StatusCode.PERMISSION_DENIED, "queue:write")
    assert client.delete(member_url, headers=owner.headers).status_code == 204
    for key in (k1, k2):
        error = rpc_error(list_queues, grpc_stub, contract, api_key(key))
        assert_status(error, UNAUTHENTICATED)


def _signed(app: Flask, **claims: Any) -> str:
    now = datetime.now(UTC)
    body = {"iat": now, "nbf": now, "exp": now + timedelta(minutes=5), **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, signing_key(app), "HS256")


@pytest.mark.parametrize("missing", ["jti", "type"])
def test_a_signed_token_without_jti_or_type_is_unauthenticated(
    grpc_stub: SimpleNamespace, contract: Contract, app: Flask, owner: Account, missing: str
) -> None:
    claims = {
        "sub": owner.user_id,
        "type": "access",
        "jti": uuid.uuid4().hex,
        "org_id": owner.organization_id,
        missing: None,
    }
    error = rpc_error(list_queues, grpc_stub, contract, bearer(_signed(app, **claims)))
    assert_status(error, UNAUTHENTICATED, missing)


def test_changing_the_password_ends_the_users_other_sessions(
    grpc_stub: SimpleNamespace, contract: Contract, client: FlaskClient, auth: Any, owner: Account
) -> None:
    elsewhere = auth.login(owner.email)
    assert list_queues(grpc_stub, contract, bearer(elsewhere["access_token"])).total == 0
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.json
    for token in (elsewhere["access_token"], owner.access_token):
        error = rpc_error(list_queues, grpc_stub, contract, bearer(token))
        assert_status(error, UNAUTHENTICATED, "revoked")
    assert list_queues(grpc_stub, contract, bearer(changed.json["access_token"])).total == 0
