"""A cached queue never outlives a change: the very next submit sees it (``queue_cache``).

The change goes through one app, the next submit through another, as in
``test_actor_cache``.  The queue cache is per process, so both apps share it here:
nothing is forgotten locally, and only the actor epoch in Redis ends an entry,
which is what another process sees too.  Each test runs with rate limits on and off
(the epoch is read inside the limit's script, or with the blocklist's ``MGET``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from app.db import get_engine, session_scope
from app.models import Job
from tasks.publisher import flush_stamps
from tests.conftest import Account, Auth


@pytest.fixture(params=[True, False], ids=["limits-on", "limits-off"])
def limits(request: pytest.FixtureRequest) -> bool:
    """Whether rate limits are on."""
    return bool(request.param)


@pytest.fixture
def client(app_with: Callable[..., FlaskClient], limits: bool) -> FlaskClient:
    """A client of the app that submits."""
    return app_with(rate_limit_enabled=limits)


@pytest.fixture
def other(app_with: Callable[..., FlaskClient], limits: bool) -> FlaskClient:
    """A client of a second app on the same database and Redis: the one that changes."""
    return app_with(rate_limit_enabled=limits)


@pytest.fixture
def queue_selects(database_url: str) -> Iterator[list[str]]:
    """SQL statements that read the queues table, as they run."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM queues" in statement:
            seen.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _submit(client: FlaskClient, account: Account, queue_id: str) -> Any:
    return client.post(
        "/api/v1/jobs", json={"queue_id": queue_id, "job_type": "echo"}, headers=account.headers
    )


def _warm(client: FlaskClient, account: Account, queue_id: str) -> None:
    for _ in range(2):
        response = _submit(client, account, queue_id)
        assert response.status_code == 201, response.json


def _warm_and_drain(client: FlaskClient, account: Account, queue_id: str) -> None:
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
    client: FlaskClient, owner: Account, queue_selects: list[str]
) -> None:
    queue = _new_queue(client, owner)
    _warm(client, owner, queue["id"])
    queue_selects.clear()
    assert _submit(client, owner, queue["id"]).status_code == 201
    assert queue_selects == []


def test_a_deleted_queue_is_not_found_at_once(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    queue = _new_queue(client, owner)
    _warm_and_drain(client, owner, queue["id"])
    deleted = other.delete(f"/api/v1/queues/{queue['id']}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.json
    response = _submit(client, owner, queue["id"])
    assert response.status_code == 404, response.json
    assert response.json["error"] == "Queue not found"


def test_new_queue_settings_apply_to_the_next_submit(
    client: FlaskClient, other: FlaskClient, owner: Account
) -> None:
    queue = _new_queue(client, owner, settings={"max_attempts": 2})
    _warm(client, owner, queue["id"])
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
    _warm(client, owner, queue["id"])
    stranger = auth.register("Other")
    response = _submit(client, stranger, queue["id"])
    assert response.status_code == 404, response.json


def test_a_paused_queue_holds_the_next_submit(
    client: FlaskClient, other: FlaskClient, owner: Account, database_url: str
) -> None:
    queue = _new_queue(client, owner)
    _warm(client, owner, queue["id"])
    paused = other.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    assert paused.status_code == 204, paused.get_data(as_text=True)
    job = _submit(client, owner, queue["id"]).json
    flush_stamps()  # a published job would now carry its stamp
    with session_scope(database_url) as session:
        stored = session.get(Job, uuid.UUID(job["id"]))
        assert stored is not None
        assert stored.published_at is None
