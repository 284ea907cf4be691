"""Input SQL cannot store or compare is 400 with a field error on every REST route.

The rules live in ``app.services.validation`` and are shared with gRPC; the REST
edge only refuses JSON nested too deep to parse safely.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, Account

# Instants whose UTC equivalent falls outside years 1-9999: Python cannot convert them.
OUT_OF_CALENDAR = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("moment", OUT_OF_CALENDAR)
def test_scheduled_for_outside_the_calendar_in_utc_is_400(
    client: FlaskClient, owner: Account, queue: dict[str, Any], moment: str
) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", "scheduled_for": moment},
        headers=owner.headers,
    )
    assert response.status_code == 400, response.json
    assert list(response.json["errors"]) == ["scheduled_for"]


def test_api_key_expiry_outside_the_calendar_in_utc_is_400(
    client: FlaskClient, owner: Account
) -> None:
    response = client.post(
        "/api/v1/api-keys",
        json={"name": "k", "scopes": ["job:read"], "expires_at": "9999-12-31T23:59:59-14:00"},
        headers=owner.headers,
    )
    assert response.status_code == 400, response.json
    assert list(response.json["errors"]) == ["expires_at"]


def test_the_last_instant_of_the_calendar_is_a_valid_schedule(
    client: FlaskClient, owner: Account, queue: dict[str, Any]
) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={
            "queue_id": queue["id"],
            "job_type": "echo",
            "scheduled_for": "9999-12-31T23:59:59.999999+00:00",
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.json
    assert response.json["status"] == "scheduled"
    assert response.json["scheduled_for"].startswith("9999-12-31T23:59:59.999999")


@pytest.mark.parametrize("worker_type", [{}, [], 1, None])
def test_a_worker_type_setting_that_is_no_string_is_400(
    client: FlaskClient, owner: Account, queue: dict[str, Any], worker_type: Any
) -> None:
    """Before, an object or a list here was looked up in a dict and answered 500."""
    response = client.put(
        f"/api/v1/queues/{queue['id']}",
        json={"name": "q", "settings": {"worker_type": worker_type}},
        headers=owner.headers,
    )
    assert response.status_code == 400, response.json
    assert list(response.json["errors"]) == ["settings.worker_type"]


def test_a_required_body_that_is_missing_is_400(client: FlaskClient, owner: Account) -> None:
    response = client.post("/api/v1/queues", headers=owner.headers)
    assert response.status_code == 400, response.json
    assert response.json["errors"] == {"json": ["Missing body."]}


@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
def test_is_active_takes_json_booleans_only(
    client: FlaskClient, owner: Account, queue: dict[str, Any], value: Any
) -> None:
    response = client.patch(
        f"/api/v1/queues/{queue['id']}", json={"is_active": value}, headers=owner.headers
    )
    assert response.status_code == 400, response.json
    assert list(response.json["errors"]) == ["is_active"]


MARK = "@@@"
NUL = "\\u0000"
LONE_SURROGATE = "\\ud800"

# (method, path, body with MARK where the text under test goes, the field named)
ROUTES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "register email": (
        "POST",
        "/api/v1/auth/register",
        {"email": f"a{MARK}@example.com", "password": PASSWORD, "organization_name": "o"},
        "email",
    ),
    "register password": (
        "POST",
        "/api/v1/auth/register",
        {"email": "p@example.com", "password": f"{PASSWORD}{MARK}", "organization_name": "o"},
        "password",
    ),
    "register organization_name": (
        "POST",
        "/api/v1/auth/register",
        {"email": "o@example.com", "password": PASSWORD, "organization_name": MARK},
        "organization_name",
    ),
    "login email": (
        "POST",
        "/api/v1/auth/login",
        {"email": f"a{MARK}@example.com", "password": PASSWORD},
        "email",
    ),
    "login password": (
        "POST",
        "/api/v1/auth/login",
        {"email": "a@example.com", "password": MARK},
        "password",
    ),
    "organization name": ("PATCH", "/api/v1/organizations/{org}", {"name": MARK}, "name"),
    "organization settings": (
        "PATCH",
        "/api/v1/organizations/{org}",
        {"settings": {"theme": MARK}},
        "settings",
    ),
    "member email": (
        "POST",
        "/api/v1/organizations/{org}/members",
        {"email": f"m{MARK}@example.com", "password": PASSWORD},
        "email",
    ),
    "member password": (
        "POST",
        "/api/v1/organizations/{org}/members",
        {"email": "m@example.com", "password": f"{PASSWORD}{MARK}"},
        "password",
    ),
    "project name": ("POST", "/api/v1/projects", {"name": MARK}, "name"),
    "project description": (
        "POST",
        "/api/v1/projects",
        {"name": "p", "description": MARK},
        "description",
    ),
    "queue name": ("POST", "/api/v1/queues", {"name": MARK}, "name"),
    "queue description": (
        "PATCH",
        "/api/v1/queues/{queue}",
        {"description": MARK},
        "description",
    ),
    "queue settings key": (
        "PUT",
        "/api/v1/queues/{queue}",
        {"name": "q", "settings": {MARK: 1}},
        "settings",
    ),
    "job queue_name": (
        "POST",
        "/api/v1/jobs",
        {"queue_name": MARK, "job_type": "echo"},
        "queue_name",
    ),
    "job payload": (
        "POST",
        "/api/v1/jobs",
        {"queue_id": "{queue}", "job_type": "echo", "payload": {"to": [MARK]}},
        "payload",
    ),
    "api key name": ("POST", "/api/v1/api-keys", {"name": MARK, "scopes": ["job:read"]}, "name"),
    "worker name": ("POST", "/api/v1/workers", {"name": MARK}, "name"),
    "worker capabilities": (
        "POST",
        "/api/v1/workers",
        {"name": "w", "capabilities": {MARK: True}},
        "capabilities",
    ),
    "heartbeat metadata": (
        "POST",
        "/api/v1/workers/{worker}/heartbeat",
        {"metadata": {"load": MARK}},
        "metadata",
    ),
}


def _body(template: dict[str, Any], ids: dict[str, str], escape: str) -> bytes:
    """The JSON text of ``template`` with the ids filled in and MARK as a JSON escape."""
    text = json.dumps(template).replace("{queue}", ids["queue"])
    return text.replace(MARK, f"x{escape}y").encode()


@pytest.fixture
def ids(client: FlaskClient, owner: Account, queue: dict[str, Any]) -> dict[str, str]:
    """The ids the routes address."""
    worker = client.post("/api/v1/workers", json={"name": "w0"}, headers=owner.headers)
    assert worker.status_code == 201, worker.json
    return {"org": owner.organization_id, "queue": queue["id"], "worker": worker.json["id"]}


@pytest.mark.parametrize("escape", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_unstorable_text_is_400_naming_the_field(
    client: FlaskClient, owner: Account, ids: dict[str, str], route: str, escape: str
) -> None:
    method, path, template, field = ROUTES[route]
    response = client.open(
        path.format(**ids),
        method=method,
        data=_body(template, ids, escape),
        content_type="application/json",
        headers=owner.headers,
    )
    assert response.status_code == 400, response.json
    assert field in response.json["errors"], response.json
