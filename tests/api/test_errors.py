"""Every error is JSON in the contract's shape; nothing answers 500 or a stack trace."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.api.app import create_app
from app.config import Settings
from tests.conftest import Account


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json == {"error": "Resource not found", "status_code": 404}


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/v1/auth/login")
    assert response.status_code == 405
    assert response.json["status_code"] == 405
    assert "POST" in response.headers["Allow"]


def test_malformed_json_is_400(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/queues", data="{not json", content_type="application/json", headers=owner.headers
    )
    assert response.status_code == 400
    assert response.json["errors"] == {"json": ["Invalid JSON body."]}


def test_non_json_body_is_415(client: FlaskClient, owner: Account) -> None:
    response = client.post(
        "/api/v1/queues",
        data="name=x",
        content_type="application/x-www-form-urlencoded",
        headers=owner.headers,
    )
    assert response.status_code == 415
    assert response.json["status_code"] == 415


def test_body_over_the_limit_is_413_and_writes_nothing(settings: Settings, owner: Account) -> None:
    small = create_app(settings.replace(max_content_length=2048)).test_client()
    response = small.post(
        "/api/v1/queues", json={"name": "big", "description": "x" * 4096}, headers=owner.headers
    )
    assert response.status_code == 413
    assert response.json["status_code"] == 413
    listed = small.get("/api/v1/queues", headers=owner.headers).json
    assert listed["pagination"]["total"] == 0


def test_default_limit_is_one_mebibyte(app: Flask) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for response in (client.get("/healthz"), client.get("/api/v1/missing")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_openapi_document_is_served(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json["paths"]
    for path in ("/api/v1/jobs", "/api/v1/queues/{queue_id}/stats", "/api/v1/auth/login"):
        assert path in paths
    post_jobs = paths["/api/v1/jobs"]["post"]["responses"]
    assert "400" in post_jobs and "422" not in post_jobs
    assert client.get("/api/v1/docs").status_code == 200


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "broker": "ok"}


def test_readiness_names_the_broker_when_it_is_down(settings: Settings) -> None:
    down = create_app(settings.replace(redis_url="redis://127.0.0.1:1/0")).test_client()
    response = down.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["broker"] == "unavailable"
    assert "broker" in response.json["error"]
