"""Stop PostgreSQL: the API answers 503 with a clear JSON error and recovers by itself."""

from __future__ import annotations

import uuid

import pytest

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from tests.conftest import PASSWORD
from tests.faults.conftest import PostgresServer

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    """Run once: the outage uses its own PostgreSQL, whatever the parametrized backend."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the outage test brings its own PostgreSQL")


def test_postgres_outage_answers_503_and_recovers(
    sqlite_only: None, settings: Settings, private_postgres: PostgresServer
) -> None:
    upgrade(private_postgres.url)
    client = create_app(settings.replace(database_url=private_postgres.url)).test_client()
    email = f"pg-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "organization_name": "Outage"}
    assert client.post("/api/v1/auth/register", json=body).status_code == 201
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    queue = client.post("/api/v1/queues", json={"name": "q"}, headers=headers).json

    private_postgres.stop("immediate")
    for response in (
        client.get("/api/v1/queues", headers=headers),
        client.post(
            "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=headers
        ),
        client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}),
    ):
        assert response.status_code == 503
        assert response.json == {
            "error": "The database is unavailable; try again shortly",
            "status_code": 503,
        }
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"] == "unavailable"

    private_postgres.start()
    assert client.get("/readyz").status_code == 200
    listed = client.get("/api/v1/queues", headers=headers)
    assert listed.status_code == 200
    assert [q["name"] for q in listed.json["queues"]] == ["q"]
    submitted = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo"}, headers=headers
    )
    assert submitted.status_code == 201
