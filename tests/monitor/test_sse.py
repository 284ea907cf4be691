"""GET /monitor/events: a bounded server-sent event stream per organization."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.api.app import create_app
from app.config import Settings
from app.redis_server import RedisProcess
from app.services.live_state import LiveState
from tests.conftest import PASSWORD, Account, Auth

EVENTS = "/api/v1/monitor/events"
TICKETS = "/api/v1/monitor/events/tickets"


@pytest.fixture
def sse_app(settings: Settings) -> Flask:
    """An app whose streams last 3 s with a keepalive every second, two at a time."""
    return create_app(
        settings.replace(sse_max_seconds=3, sse_keepalive_seconds=1, sse_max_streams=2)
    )


@pytest.fixture
def sse_client(sse_app: Flask) -> FlaskClient:
    """A test client of ``sse_app``."""
    return sse_app.test_client()


@pytest.fixture
def store(settings: Settings) -> Iterator[LiveState]:
    """The monitor store on the test Redis."""
    store = LiveState.from_url(settings.redis_url)
    yield store
    store.close()


def ticket(client: FlaskClient, headers: dict[str, str]) -> str:
    """A stream ticket for the caller of ``headers``."""
    response = client.post(TICKETS, headers=headers)
    assert response.status_code == 201, response.get_data()
    assert response.json["expires_in"] == 30
    return str(response.json["ticket"])


def open_stream(client: FlaskClient, account: Account, *, with_ticket: bool = True) -> TestResponse:
    """Open an event stream as ``account``; the subscription exists when this returns."""
    if with_ticket:
        query = {"ticket": ticket(client, account.headers)}
        response = client.get(EVENTS, query_string=query, buffered=False)
    else:
        response = client.get(EVENTS, headers=account.headers, buffered=False)
    assert response.status_code == 200, response.get_data()
    return response


def frames(response: TestResponse) -> Iterator[str]:
    """The stream's frames as text, as they arrive."""
    for chunk in response.response:
        yield chunk.decode() if isinstance(chunk, bytes) else chunk


def next_event(response: TestResponse, kind: str = "task") -> dict[str, Any]:
    """Read frames until the first ``kind`` event; the stream's own bound limits the wait."""
    for frame in frames(response):
        if frame.startswith(f"event: {kind}\n"):
            data = frame.split("data: ", 1)[1].strip()
            return json.loads(data)  # type: ignore[no-any-return]
    raise AssertionError(f"the stream ended without a {kind} event")


def task_item(org: str, job_id: str) -> dict[str, Any]:
    """A task item as the monitor writes it."""
    return {
        "job_id": job_id,
        "queue_id": "q",
        "job_type": "echo",
        "state": "succeeded",
        "worker": "w@h",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "runtime": 0.1,
        "error": None,
        "attempt": 1,
    }


def test_a_task_event_reaches_the_stream(
    sse_client: FlaskClient, owner: Account, store: LiveState
) -> None:
    response = open_stream(sse_client, owner)
    try:
        assert response.mimetype == "text/event-stream"
        store.record_task(owner.organization_id, task_item("", "job-1"), task_id="j:0", at=1.0)
        assert next_event(response)["job_id"] == "job-1"
    finally:
        response.close()


def test_worker_events_reach_the_stream_with_a_header_token(
    sse_client: FlaskClient, owner: Account, store: LiveState
) -> None:
    response = open_stream(sse_client, owner, with_ticket=False)
    try:
        store.publish(owner.organization_id, "worker", {"hostname": "w@h"})
        assert next_event(response, "worker") == {"hostname": "w@h"}
    finally:
        response.close()


def test_a_stream_keeps_alive_then_ends_asking_to_reconnect(
    sse_client: FlaskClient, owner: Account
) -> None:
    started = time.monotonic()
    response = open_stream(sse_client, owner)
    try:
        received = list(frames(response))
    finally:
        response.close()
    assert received[0] == ": connected\n\n"
    assert received.count(": keepalive\n\n") >= 2
    assert received[-1] == "retry: 1000\n\n"
    assert 2.5 < time.monotonic() - started < 10


def test_another_organizations_events_never_arrive(
    sse_client: FlaskClient, owner: Account, auth: Auth, store: LiveState
) -> None:
    stranger = auth.register("Other")
    response = open_stream(sse_client, stranger)
    try:
        store.record_task(owner.organization_id, task_item("", "secret"), task_id="s:0", at=1.0)
        store.record_task(stranger.organization_id, task_item("", "theirs"), task_id="t:0", at=1.0)
        assert next_event(response)["job_id"] == "theirs"
    finally:
        response.close()


def test_a_query_access_token_opens_nothing(sse_client: FlaskClient, owner: Account) -> None:
    token = {"access_token": owner.access_token}
    for path in (EVENTS, "/api/v1/queues"):
        assert sse_client.get(path, query_string=token).status_code == 401


def test_a_ticket_opens_one_stream(
    sse_client: FlaskClient, owner: Account, redis_server: RedisProcess
) -> None:
    issued = ticket(sse_client, owner.headers)
    with redis.Redis.from_url(redis_server.url) as r:
        [key] = r.keys("taskforge:stream-ticket:*")
        assert 0 < r.ttl(key) <= 30
        assert issued.encode() not in key + r.get(key)
    first = sse_client.get(EVENTS, query_string={"ticket": issued}, buffered=False)
    try:
        assert first.status_code == 200
        again = sse_client.get(EVENTS, query_string={"ticket": issued})
        assert again.status_code == 401
        assert "ticket" in again.json["error"]
    finally:
        first.close()


@pytest.mark.parametrize("value", ["", "not-a-ticket", "x" * 5000])
def test_an_unknown_ticket_is_401(sse_client: FlaskClient, value: str) -> None:
    response = sse_client.get(EVENTS, query_string={"ticket": value})
    assert response.status_code == 401
    assert set(response.json) == {"error", "status_code"}


def test_a_ticket_needs_a_caller_who_may_read_jobs(sse_client: FlaskClient, owner: Account) -> None:
    assert sse_client.post(TICKETS).status_code == 401
    assert sse_client.post(TICKETS, headers={"Authorization": "Bearer junk"}).status_code == 401
    scoped = sse_client.post(
        "/api/v1/api-keys", json={"name": "q", "scopes": ["queue:read"]}, headers=owner.headers
    ).json
    refused = sse_client.post(TICKETS, headers={"X-API-Key": scoped["key"]})
    assert refused.status_code == 403


def test_an_api_key_ticket_streams_until_the_key_is_revoked(
    sse_client: FlaskClient, owner: Account, store: LiveState
) -> None:
    key = sse_client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["job:read"]}, headers=owner.headers
    ).json
    headers = {"X-API-Key": key["key"]}
    response = sse_client.get(
        EVENTS, query_string={"ticket": ticket(sse_client, headers)}, buffered=False
    )
    try:
        assert response.status_code == 200
        store.record_task(owner.organization_id, task_item("", "by-key"), task_id="k:0", at=1.0)
        assert next_event(response)["job_id"] == "by-key"
    finally:
        response.close()
    unused = ticket(sse_client, headers)
    assert (
        sse_client.delete(f"/api/v1/api-keys/{key['id']}", headers=owner.headers).status_code == 204
    )
    assert sse_client.get(EVENTS, query_string={"ticket": unused}).status_code == 401


ENDINGS: dict[str, Callable[[FlaskClient, Account, Account], Any]] = {
    "logout": lambda c, owner, viewer: c.post("/api/v1/auth/logout", headers=viewer.headers),
    "removal": lambda c, owner, viewer: c.delete(
        f"/api/v1/organizations/{owner.organization_id}/members/{viewer.user_id}",
        headers=owner.headers,
    ),
    "password change": lambda c, owner, viewer: c.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "another passphrase"},
        headers=viewer.headers,
    ),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_ticket_dies_with_its_session(
    sse_client: FlaskClient, auth: Auth, owner: Account, ending: str
) -> None:
    viewer = auth.member(owner, "viewer")
    issued = ticket(sse_client, viewer.headers)
    assert ENDINGS[ending](sse_client, owner, viewer).status_code in (200, 204)
    response = sse_client.get(EVENTS, query_string={"ticket": issued})
    assert response.status_code == 401


def test_a_revoked_token_cannot_get_a_ticket(sse_client: FlaskClient, owner: Account) -> None:
    assert sse_client.post("/api/v1/auth/logout", headers=owner.headers).status_code == 204
    assert sse_client.post(TICKETS, headers=owner.headers).status_code == 401


def test_streams_per_process_are_bounded(sse_client: FlaskClient, owner: Account) -> None:
    first = open_stream(sse_client, owner)
    second = open_stream(sse_client, owner)
    try:
        refused = sse_client.get(EVENTS, headers=owner.headers)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 5  # Flask-Limiter may raise it
    finally:
        first.close()
    try:
        third = open_stream(sse_client, owner)
        third.close()
    finally:
        second.close()
