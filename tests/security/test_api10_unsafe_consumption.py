"""API10 Unsafe Consumption of APIs: TaskForge takes JSON and nothing else, over REST and Celery."""

from __future__ import annotations

import pickle
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

import celeryconfig
from tasks.celery_app import app as celery_app
from tests.conftest import Account

SOME_ID = "00000000-0000-4000-8000-000000000000"
NOT_JSON = {
    "form": ("application/x-www-form-urlencoded", b"name=x&job_type=echo"),
    "multipart": (
        "multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--b--\r\n',
    ),
    "text": ("text/plain", b'{"name": "x"}'),
    "xml": ("application/xml", b"<queue><name>x</name></queue>"),
    "yaml": ("application/x-yaml", b"name: x\n"),
    "pickle": ("application/x-python-pickle", pickle.dumps({"name": "x"})),
    "octet-stream": ("application/octet-stream", pickle.dumps({"name": "x"})),
    "none": (None, b'{"name": "x"}'),
}


def _operations_with_bodies(client: FlaskClient) -> list[tuple[str, str]]:
    spec = client.get("/api/v1/openapi.json").json
    return sorted(
        (method.upper(), re.sub(r"\{[^}]+\}", SOME_ID, path))
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    )


@pytest.mark.parametrize("kind", sorted(NOT_JSON))
def test_every_body_that_is_not_json_is_415(client: FlaskClient, owner: Account, kind: str) -> None:
    content_type, body = NOT_JSON[kind]
    operations = _operations_with_bodies(client)
    assert len(operations) >= 10
    for method, path in operations:
        headers: dict[str, Any] = dict(owner.headers)
        if content_type:
            headers["Content-Type"] = content_type
        response = client.open(path, method=method, data=body, headers=headers)
        assert response.status_code == 415, (method, path, response.json)
        assert response.json["status_code"] == 415


def test_json_with_a_charset_is_accepted(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/queues",
        data=b'{"name": "charset"}',
        headers={**owner.headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_celery_accepts_json_only() -> None:
    assert celeryconfig.accept_content == ["json"]
    assert celeryconfig.task_serializer == "json"
    assert celeryconfig.event_serializer == "json"
    assert list(celery_app.conf.accept_content) == ["json"]
    assert celery_app.conf.task_serializer == "json"
    assert "pickle" not in (celery_app.conf.result_accept_content or [])


UNSTORABLE = {
    "NUL in a name": b'{"name": "a\\u0000b"}',
    "NUL in a settings key": b'{"name": "q", "settings": {"a\\u0000": 1}}',
    "lone high surrogate": b'{"name": "a\\ud800b"}',
    "lone low surrogate": b'{"name": "q", "description": "\\udfff"}',
    "reversed surrogate pair": b'{"name": "\\ude00\\ud83d"}',
}


@pytest.mark.parametrize("name", sorted(UNSTORABLE))
def test_text_the_database_cannot_store_is_400(
    client: FlaskClient, owner: Account, name: str
) -> None:
    response = client.post(
        "/api/v1/queues",
        data=UNSTORABLE[name],
        content_type="application/json",
        headers=owner.headers,
    )
    assert response.status_code == 400, response.json
    assert "NUL" in response.json["error"]


def test_unstorable_text_in_a_job_payload_or_a_login_is_400(
    client: FlaskClient, owner: Account, queue: dict
) -> None:
    job = client.post(
        "/api/v1/jobs",
        data=b'{"queue_id": "%s", "job_type": "echo", "payload": {"deep": ["\\u0000"]}}'
        % queue["id"].encode(),
        content_type="application/json",
        headers=owner.headers,
    )
    assert job.status_code == 400
    login = client.post(
        "/api/v1/auth/login",
        data=b'{"email": "a\\u0000@example.com", "password": "x"}',
        content_type="application/json",
    )
    assert login.status_code == 400


def test_escaped_text_that_is_valid_is_stored_verbatim(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/queues",
        data=b'{"name": "emoji \\ud83d\\ude00 \\u00e9 \\\\u0000"}',
        content_type="application/json",
        headers=owner.headers,
    )
    assert response.status_code == 201, response.json
    assert response.json["name"] == "emoji \U0001f600 \u00e9 \\u0000"


def test_a_number_past_the_parsers_digit_limit_is_400(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/queues",
        data=b'{"name": "x", "priority": ' + b"9" * 5000 + b"}",
        content_type="application/json",
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json["errors"] == {"json": ["Invalid JSON body."]}
