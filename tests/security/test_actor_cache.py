"""Cached actors never outlive a change: the very next request, in any process, is refused.

Two apps stand for two API processes: each has its own actor cache; the change
goes through one of them, the next request through the other (whose cache holds
the old actor).  Each test runs with rate limits on (the blocklist and the epoch
are checked inside the limit's script, ``app.services.admission``) and off (one
``MGET``, ``TokenService.authenticate``).  ``test_a_cached_actor_costs_no_query``
proves the cache is on.

The queues that submits name are cached under the same epoch
(``app.services.queue_cache``), and the last tests hold them to the same promise.
That cache is per process, so both apps share it here: nothing is forgotten
locally, and only the epoch in Redis ends an entry, as in another process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis.connection import AbstractConnection

from app.db import get_engine, session_scope
from app.models import Job
from app.redis_server import free_port
from tasks.publisher import flush_stamps
from tests.conftest import PASSWORD, Account, Auth
from tests.security.support import create_key, key_headers
from tests.support.plans import statements_on


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
def user_selects(database_url: str) -> Iterator[list[tuple[str, Any]]]:
    """SQL statements that read the users table, as they run."""
    with statements_on(get_engine(database_url), "users") as seen:
        yield seen


def _warm(client: FlaskClient, headers: dict[str, str]) -> None:
    for _ in range(2):
        response = client.get("/api/v1/organizations/current", headers=headers)
        assert response.status_code == 200, response.json


def test_a_cached_actor_costs_no_query(
    client: FlaskClient, owner: Account, user_selects: list[tuple[str, Any]]
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


# --- queues (app.services.queue_cache) ----------------------------------------------


@pytest.fixture
def queue_selects(database_url: str) -> Iterator[list[tuple[str, Any]]]:
    """SQL statements that read the queues table, as they run."""
    with statements_on(get_engine(database_url), "queues") as seen:
        yield seen


def _submit(client: FlaskClient, account: Account, queue_id: str) -> Any:
    return client.post(
        "/api/v1/jobs", json={"queue_id": queue_id, "job_type": "echo"}, headers=account.headers
    )


def _cache_queue(client: FlaskClient, account: Account, queue_id: str) -> None:
    for _ in range(2):
        response = _submit(client, account, queue_id)
        assert response.status_code == 201, response.json


def _cache_queue_and_drain(client: FlaskClient, account: Account, queue_id: str) -> None:
    """Cache the queue, then cancel its jobs so that it may be deleted."""
    for _ in range(2):
        job = _submit(client, account, queue_id).json
        cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=account.headers)
        assert cancelled.status_code == 204, cancelled.get_data(as_text=True)


def _new_queue(client: FlaskClient, owner: Account, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/queues", json={"name": "q", **fields}, headers=owner.headers)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def test_a_cached_queue_costs_no_query(
    client: FlaskClient, owner: Account, queue_selects: list[tuple[str, Any]]
) -> None:
    queue = _new_queue(client, owner)
    _cache_queue(client, owner, queue["id"])
    queue_selects.clear()
    assert _submit(client, owner, queue["id"]).status_code == 201
    assert queue_selects == []


def test_a_deleted_queue_is_not_found_at_once(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    queue = _new_queue(client, owner)
    _cache_queue_and_drain(client, owner, queue["id"])
    deleted = other.delete(f"/api/v1/queues/{queue['id']}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.json
    response = _submit(client, owner, queue["id"])
    assert response.status_code == 404, response.json
    assert response.json["error"] == "Queue not found"


def test_new_queue_settings_apply_to_the_next_submit(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    queue = _new_queue(client, owner, settings={"max_attempts": 2})
    _cache_queue(client, owner, queue["id"])
    changed = other.patch(
        f"/api/v1/queues/{queue['id']}",
        json={"settings": {"max_attempts": 7}},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.json
    response = _submit(client, owner, queue["id"])
    assert response.status_code == 201, response.json
    assert response.json["max_attempts"] == 7


def test_another_organizations_cached_queue_stays_not_found(
    client: FlaskClient, owner: Account, auth: Auth
) -> None:
    queue = _new_queue(client, owner)
    _cache_queue(client, owner, queue["id"])
    stranger = auth.register("Other")
    response = _submit(client, stranger, queue["id"])
    assert response.status_code == 404, response.json


def test_a_paused_queue_holds_the_next_submit(
    client: FlaskClient, other: FlaskClient, owner: Account, database_url: str
) -> None:
    queue = _new_queue(client, owner)
    _cache_queue(client, owner, queue["id"])
    paused = other.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    assert paused.status_code == 204, paused.get_data(as_text=True)
    job = _submit(client, owner, queue["id"]).json
    flush_stamps()  # a published job would now carry its stamp
    with session_scope(database_url) as session:
        stored = session.get(Job, uuid.UUID(job["id"]))
        assert stored is not None
        assert stored.published_at is None
