"""API2 Broken Authentication: forged, expired, revoked and replayed credentials are 401."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt as pyjwt
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import update

from app.config import Settings
from app.db import session_scope
from app.models import User
from app.redis_server import RedisProcess
from app.services.tokens import ALGORITHM, DECODE_ALGORITHMS, REFRESH, TokenStore
from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import bearer, create_key, key_headers
from tests.support.tokens import mint, signing_key


def _claims(token: str) -> dict[str, Any]:
    return pyjwt.decode(token, options={"verify_signature": False})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _with_header(token: str, header: dict[str, Any], signature: bytes) -> str:
    payload = token.split(".")[1]
    return f"{_b64(json.dumps(header).encode())}.{payload}.{_b64(signature)}"


OTHER_SECRET = "another-secret-that-is-at-least-32-bytes!"


def _signed(token: str, secret: str, algorithm: str, **kwargs: Any) -> str:
    with warnings.catch_warnings():
        # The real secret is short for HS384/HS512; that is the point of the forgery.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return pyjwt.encode(_claims(token), secret, algorithm=algorithm, **kwargs)


FORGERIES: dict[str, Callable[[str, str], str]] = {
    "alg none": lambda t, _s: _with_header(t, {"alg": "none", "typ": "JWT"}, b""),
    "alg None": lambda t, _s: _with_header(t, {"alg": "None", "typ": "JWT"}, b""),
    "alg NONE with signature": lambda t, _s: _with_header(t, {"alg": "NONE"}, b"x" * 32),
    "HS512 with the real secret": lambda t, s: _signed(t, s, "HS512"),
    "HS384 with the real secret": lambda t, s: _signed(t, s, "HS384"),
    "RS256 header": lambda t, _s: _with_header(
        t, {"alg": "RS256", "typ": "JWT"}, secrets.token_bytes(256)
    ),
    "ES256 header": lambda t, _s: _with_header(
        t, {"alg": "ES256", "typ": "JWT"}, secrets.token_bytes(64)
    ),
    "HS256 with another secret": lambda t, _s: _signed(t, OTHER_SECRET, "HS256"),
    "HS256 with a jku header": lambda t, _s: _signed(
        t, OTHER_SECRET, "HS256", headers={"jku": "https://attacker.example/keys.json"}
    ),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_tokens_are_rejected(
    client: FlaskClient, owner: Account, settings: Settings, name: str
) -> None:
    forged = FORGERIES[name](owner.access_token, settings.jwt_secret_key)
    response = client.get("/api/v1/queues", headers=bearer(forged))
    assert response.status_code == 401
    assert set(response.json) == {"error", "status_code"}


def test_the_same_claims_signed_properly_are_accepted(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    resigned = _signed(owner.access_token, settings.jwt_secret_key, "HS256")
    assert client.get("/api/v1/queues", headers=bearer(resigned)).status_code == 200


def test_the_algorithm_is_pinned(app: Flask) -> None:
    assert ALGORITHM == "HS256"
    assert list(DECODE_ALGORITHMS) == ["HS256"]


def _refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_tokens_of_one_login_share_a_family_kept_on_rotation(
    client: FlaskClient, owner: Account
) -> None:
    family = _claims(owner.refresh_token)["family"]
    assert _claims(owner.access_token)["family"] == family
    rotated = _refresh(client, owner.refresh_token).json
    assert _claims(rotated["refresh_token"])["family"] == family
    assert _claims(rotated["access_token"])["family"] == family
    other_login = client.post(
        "/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD}
    ).json
    assert _claims(other_login["refresh_token"])["family"] != family


def test_reused_refresh_token_revokes_its_whole_family(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    elsewhere = auth.login(owner.email)
    rotated = _refresh(client, owner.refresh_token).json
    assert client.get("/api/v1/queues", headers=bearer(rotated["access_token"])).status_code == 200

    replay = _refresh(client, owner.refresh_token)
    assert replay.status_code == 401
    assert "revoked" in replay.json["error"]

    assert _refresh(client, rotated["refresh_token"]).status_code == 401
    for token in (rotated["access_token"], owner.access_token):
        response = client.get("/api/v1/queues", headers=bearer(token))
        assert response.status_code == 401
        assert response.json["error"] == "The token has been revoked"
    # Another login of the same user is another family and keeps working.
    assert (
        client.get("/api/v1/queues", headers=bearer(elsewhere["access_token"])).status_code == 200
    )
    assert _refresh(client, elsewhere["refresh_token"]).status_code == 200


def test_family_revocation_lasts_the_refresh_lifetime(
    client: FlaskClient, owner: Account, settings: Settings, redis_server: RedisProcess
) -> None:
    _refresh(client, owner.refresh_token)
    _refresh(client, owner.refresh_token)
    family = _claims(owner.refresh_token)["family"]
    with redis.Redis.from_url(redis_server.url) as r:
        ttl = r.ttl(f"taskforge:family-revoked:{family}")
    lifetime = settings.refresh_token_days * 24 * 3600
    assert lifetime - 60 < ttl <= lifetime


def test_rotation_is_atomic(redis_server: RedisProcess) -> None:
    with redis.Redis.from_url(redis_server.url) as r:
        store = TokenStore(r)
        jti, expires = uuid.uuid4().hex, 2**31
        assert store.consume(jti, expires) is True
        assert store.consume(jti, expires) is False
        assert store.is_revoked(jti)


def test_logout_ends_the_session_including_an_unsent_refresh_token(
    client: FlaskClient, owner: Account
) -> None:
    assert client.post("/api/v1/auth/logout", headers=owner.headers).status_code == 204
    assert client.get("/api/v1/queues", headers=owner.headers).status_code == 401
    assert _refresh(client, owner.refresh_token).status_code == 401


def test_logout_with_an_api_key_is_refused(client: FlaskClient, owner: Account) -> None:
    key = create_key(client, owner, ["queue:read"])
    response = client.post("/api/v1/auth/logout", headers=key_headers(key))
    assert response.status_code == 401


def test_expired_refresh_token_is_401(app: Flask, client: FlaskClient, owner: Account) -> None:
    token = mint(app, owner.user_id, token_type=REFRESH, expires_in=timedelta(seconds=-5))
    response = _refresh(client, token)
    assert response.status_code == 401
    assert "expired" in response.json["error"].lower()


def test_tokens_of_a_disabled_user_are_401(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(owner.user_id)).values(is_active=False)
        )
    assert client.get("/api/v1/queues", headers=owner.headers).status_code == 401
    assert _refresh(client, owner.refresh_token).status_code == 401


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda k: "tf_" + k["prefix"] + "_" + "A" * 43, id="real-prefix-wrong-secret"),
        pytest.param(lambda k: k["key"][:-1], id="truncated"),
        pytest.param(lambda k: k["key"] + "x", id="extended"),
        pytest.param(lambda k: k["key"].replace("tf_", "tk_", 1), id="wrong-type"),
        pytest.param(lambda k: "tf_" + "x" * 40 + "_" + "y" * 43, id="long-prefix"),
        pytest.param(lambda k: "tf__" + "y" * 43, id="empty-prefix"),
        pytest.param(lambda k: "tf_" + k["prefix"] + "_", id="empty-secret"),
    ],
)
def test_wrong_api_keys_are_401(client: FlaskClient, owner: Account, make_key) -> None:
    key = create_key(client, owner, ["queue:read"])
    response = client.get("/api/v1/queues", headers={"X-API-Key": make_key(key)})
    assert response.status_code == 401
    assert response.json["error"] in ("Invalid API key", "Malformed API key")


def test_key_of_a_disabled_creator_is_401(
    client: FlaskClient, auth: Auth, owner: Account, settings: Settings
) -> None:
    admin = auth.member(owner, "admin")
    key = create_key(client, admin, ["queue:read"])
    with session_scope(settings.database_url) as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(admin.user_id)).values(is_active=False)
        )
    assert client.get("/api/v1/queues", headers=key_headers(key)).status_code == 401


def test_twenty_bad_logins_are_throttled(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_login="10 per minute")
    statuses = []
    for _ in range(20):
        response = client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": "wrong password"}
        )
        statuses.append(response.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429] * 10
    assert int(response.headers["Retry-After"]) > 0
    assert response.json["status_code"] == 429
    right = client.post("/api/v1/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert right.status_code == 429


def _token_without(app: Flask, account: Account, claim: str, token_type: str = "access") -> str:
    """A token signed with the real secret whose claims lack ``claim``."""
    now = datetime.now(UTC)
    claims = {
        "sub": account.user_id,
        "type": token_type,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "org_id": account.organization_id,
        "family": uuid.uuid4().hex,
    }
    del claims[claim]
    return pyjwt.encode(claims, signing_key(app), "HS256")


@pytest.mark.parametrize("claim", ["jti", "type", "iat", "exp"])
def test_a_signed_token_missing_a_required_claim_is_401(
    app: Flask, client: FlaskClient, owner: Account, claim: str
) -> None:
    token = _token_without(app, owner, claim)
    for call in (
        lambda: client.get("/api/v1/queues", headers=bearer(token)),
        lambda: client.get("/api/v1/auth/validate", headers=bearer(token)),
        lambda: client.post("/api/v1/auth/logout", headers=bearer(token)),
    ):
        response = call()
        assert response.status_code == 401, response.json
        assert claim in response.json["error"]


@pytest.mark.parametrize("claim", ["jti", "type"])
def test_a_signed_refresh_token_missing_a_required_claim_is_401(
    app: Flask, client: FlaskClient, owner: Account, claim: str
) -> None:
    response = _refresh(client, _token_without(app, owner, claim, token_type="refresh"))
    assert response.status_code == 401, response.json


def test_a_token_of_an_unknown_type_is_401(app: Flask, client: FlaskClient, owner: Account) -> None:
    token = _token_without(app, owner, "family")
    claims = {**_claims(token), "type": "stream"}
    forged = pyjwt.encode(claims, signing_key(app), "HS256")
    assert client.get("/api/v1/queues", headers=bearer(forged)).status_code == 401
