"""POST /auth/password: the current password is required and every other session ends.

``tests/grpc/test_grpc_auth.py`` checks that the ended sessions are refused over gRPC too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import bearer, create_key, key_headers

PASSWORD_URL = "/api/v1/auth/password"
NEW_PASSWORD = "a brand new passphrase"


def change(
    client: FlaskClient, headers: dict[str, str], current: str, new: str = NEW_PASSWORD
) -> Any:
    body = {"current_password": current, "new_password": new}
    return client.post(PASSWORD_URL, json=body, headers=headers)


def login(client: FlaskClient, email: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def refresh(client: FlaskClient, token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_changing_the_password_ends_every_other_session(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    other = auth.login(owner.email)
    third = auth.login(owner.email)
    assert refresh(client, third["refresh_token"]).status_code == 200  # a rotated family

    changed = change(client, owner.headers, PASSWORD)
    assert changed.status_code == 200, changed.json
    fresh = changed.json
    assert set(fresh) == {"access_token", "refresh_token", "token_type", "expires_in"}

    for session in (other, third):
        response = client.get("/api/v1/queues", headers=bearer(session["access_token"]))
        assert response.status_code == 401
        assert "revoked" in response.json["error"]
        assert refresh(client, session["refresh_token"]).status_code == 401
    # The session that changed it goes on with the pair it got back, not the old one.
    assert client.get("/api/v1/queues", headers=owner.headers).status_code == 401
    assert refresh(client, owner.refresh_token).status_code == 401
    assert client.get("/api/v1/queues", headers=bearer(fresh["access_token"])).status_code == 200
    rotated = refresh(client, fresh["refresh_token"])
    assert rotated.status_code == 200
    renewed = bearer(rotated.json["access_token"])
    assert client.get("/api/v1/queues", headers=renewed).status_code == 200

    assert login(client, owner.email, PASSWORD).status_code == 401
    assert login(client, owner.email, NEW_PASSWORD).status_code == 200


def test_other_users_and_api_keys_are_untouched(
    client: FlaskClient, auth: Auth, owner: Account
) -> None:
    colleague = auth.member(owner, "member")
    key = create_key(client, owner, ["queue:read"])
    assert change(client, owner.headers, PASSWORD).status_code == 200
    assert client.get("/api/v1/queues", headers=colleague.headers).status_code == 200
    assert client.get("/api/v1/queues", headers=key_headers(key)).status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "field"),
    [
        ("wrong password", NEW_PASSWORD, "current_password"),
        (PASSWORD, "short", "new_password"),
        (PASSWORD, "x" * 129, "new_password"),
        (PASSWORD, PASSWORD, "new_password"),
    ],
)
def test_a_refused_change_changes_nothing(
    client: FlaskClient, auth: Auth, owner: Account, current: str, new: str, field: str
) -> None:
    other = auth.login(owner.email)
    response = change(client, owner.headers, current, new)
    assert response.status_code == 400, response.json
    assert field in response.json["errors"]
    for token in (owner.access_token, other["access_token"]):
        assert client.get("/api/v1/queues", headers=bearer(token)).status_code == 200
    assert refresh(client, other["refresh_token"]).status_code == 200
    assert login(client, owner.email, PASSWORD).status_code == 200
    if new != PASSWORD:
        assert login(client, owner.email, new).status_code in (400, 401)


@pytest.mark.parametrize(
    "body",
    [{}, {"current_password": PASSWORD}, {"new_password": NEW_PASSWORD}, {"extra": 1}],
)
def test_the_body_is_validated(client: FlaskClient, owner: Account, body: dict) -> None:
    assert client.post(PASSWORD_URL, json=body, headers=owner.headers).status_code == 400


def test_an_access_token_is_required(client: FlaskClient, owner: Account) -> None:
    assert change(client, {}, PASSWORD).status_code == 401
    key = create_key(client, owner, ["org:admin", "apikey:admin"])
    assert change(client, key_headers(key), PASSWORD).status_code == 401
    assert change(client, bearer(owner.refresh_token), PASSWORD).status_code == 401
    assert login(client, owner.email, PASSWORD).status_code == 200


def test_password_guesses_are_throttled_like_logins(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_login="3 per minute")
    statuses = [change(client, owner.headers, f"guess {n}").status_code for n in range(5)]
    assert statuses == [400, 400, 400, 429, 429]
    limited = change(client, owner.headers, PASSWORD)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert login(client, owner.email, PASSWORD).status_code == 200
