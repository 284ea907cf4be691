"""Cached actors never outlive a change: the very next request, in any process, is refused.

Two apps stand for two API processes: each has its own actor cache; the change
goes through one of them, the next request through the other (whose cache holds
the old actor).  Each test runs with rate limits on (the blocklist and the epoch
are checked inside the limit's script, ``app.services.admission``) and off (one
``MGET``, ``TokenService.authenticate``).  ``test_a_cached_actor_costs_no_query``
proves the cache is on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis.connection import AbstractConnection
from sqlalchemy import event

from app.db import get_engine
from app.redis_server import free_port
from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import create_key, key_headers


@pytest.fixture(params=[True, False], ids=["limits-on", "limits-off"])
def limits(request: pytest.FixtureRequest) -> bool:
    """Whether rate limits are on."""
    return bool(request.param)


@pytest.fixture
def client(app_with: Callable[..., FlaskClient], limits: bool) -> FlaskClient:
    """A client of the app whose cache is tested."""
    return app_with(rate_limit_enabled=limits)


@pytest.fixture
def other(app_with: Callable[..., FlaskClient], limits: bool) -> FlaskClient:
    """A client of a second app on the same database and Redis: another API process."""
    return app_with(rate_limit_enabled=limits)


@pytest.fixture
def redis_commands() -> Iterator[list[bytes]]:
    """Redis round trips as they are sent (a pipeline or a script is one)."""
    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    def record(self: Any, command: Any, check_health: bool = True) -> Any:
        packed = command if isinstance(command, bytes) else b"".join(command)
        sent.append(packed)
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = record  # type: ignore[method-assign]
    yield sent
    AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@pytest.fixture
def user_selects(database_url: str) -> Iterator[list[str]]:
    """SQL statements that read the users table, as they run."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM users" in statement:
            seen.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _warm(client: FlaskClient, headers: dict[str, str]) -> None:
    for _ in range(2):
        response = client.get("/api/v1/organizations/current", headers=headers)
        assert response.status_code == 200, response.json


def test_a_cached_actor_costs_no_query(
    client: FlaskClient, owner: Account, user_selects: list[str]
) -> None:
    _warm(client, owner.headers)
    user_selects.clear()
    assert client.get("/api/v1/organizations/current", headers=owner.headers).status_code == 200
    assert user_selects == []


def test_a_cached_actor_costs_one_redis_round_trip(
    client: FlaskClient, owner: Account, redis_commands: list[bytes]
) -> None:
    key = create_key(client, owner, ["queue:read"])
    for headers in (owner.headers, key_headers(key)):
        _warm(client, headers)
        redis_commands.clear()
        response = client.get("/api/v1/organizations/current", headers=headers)
        assert response.status_code == 200
        assert len(redis_commands) == 1, redis_commands


def test_a_revoked_api_key_is_refused_at_once(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    key = create_key(client, owner, ["queue:read"])
    _warm(client, key_headers(key))
    revoked = other.post(f"/api/v1/api-keys/{key['id']}/revoke", headers=owner.headers)
    assert revoked.status_code == 204, revoked.json
    response = client.get("/api/v1/organizations/current", headers=key_headers(key))
    assert response.status_code == 401
    assert "revoked" in response.json["error"]


def test_a_removed_member_is_refused_at_once(
    client: FlaskClient, other: FlaskClient, auth: Auth, owner: Account
) -> None:
    member = auth.member(owner, "admin")
    key = create_key(client, member, ["queue:read"])
    _warm(client, member.headers)
    _warm(client, key_headers(key))
    removed = other.delete(
        f"/api/v1/organizations/{owner.organization_id}/members/{member.user_id}",
        headers=owner.headers,
    )
    assert removed.status_code == 204, removed.json
    for headers in (member.headers, key_headers(key)):
        response = client.get("/api/v1/organizations/current", headers=headers)
        assert response.status_code == 401, response.json


def test_a_demoted_admin_loses_the_role_at_once(
    client: FlaskClient, other: FlaskClient, auth: Auth, owner: Account
) -> None:
    member = auth.member(owner, "admin")
    key = create_key(client, member, ["queue:read", "queue:write"])
    for headers, name in ((member.headers, "by-token"), (key_headers(key), "by-key")):
        created = client.post("/api/v1/queues", json={"name": name}, headers=headers)
        assert created.status_code == 201, created.json
    demoted = other.patch(
        f"/api/v1/organizations/{owner.organization_id}/members/{member.user_id}",
        json={"role": "viewer"},
        headers=owner.headers,
    )
    assert demoted.status_code == 200, demoted.json
    for headers, name in ((member.headers, "again-token"), (key_headers(key), "again-key")):
        response = client.post("/api/v1/queues", json={"name": name}, headers=headers)
        assert response.status_code == 403, response.json


def test_a_logged_out_token_is_refused_at_once(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    _warm(client, owner.headers)
    logged_out = other.post(
        "/api/v1/auth/logout", json={"refresh_token": owner.refresh_token}, headers=owner.headers
    )
    assert logged_out.status_code == 204, logged_out.json
    response = client.get("/api/v1/organizations/current", headers=owner.headers)
    assert response.status_code == 401
    assert "revoked" in response.json["error"]


def test_a_changed_password_ends_cached_sessions_at_once(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    _warm(client, owner.headers)
    changed = other.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another-password-456"},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.json
    response = client.get("/api/v1/organizations/current", headers=owner.headers)
    assert response.status_code == 401
    assert "password" in response.json["error"]


def test_without_redis_an_api_key_still_verifies_and_a_token_fails_closed(
    client: FlaskClient,
    app_with: Callable[..., FlaskClient],
    limits: bool,
    owner: Account,
) -> None:
    key = create_key(client, owner, ["queue:read"])
    _warm(client, key_headers(key))
    down = app_with(rate_limit_enabled=limits, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert down.get("/api/v1/organizations/current", headers=key_headers(key)).status_code == 200
    response = down.get("/api/v1/organizations/current", headers=owner.headers)
    assert response.status_code == 503, response.json
