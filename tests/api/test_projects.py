"""/projects: CRUD and its rules."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import Account


def test_project_crud(client: FlaskClient, owner: Account) -> None:
    created = client.post(
        "/api/v1/projects",
        json={"name": "billing", "description": "Invoices"},
        headers=owner.headers,
    )
    assert created.status_code == 201
    project = created.json
    assert project["organization_id"] == owner.organization_id
    url = f"/api/v1/projects/{project['id']}"
    assert client.get(url, headers=owner.headers).json["name"] == "billing"
    patched = client.patch(
        url, json={"name": "payments", "description": None}, headers=owner.headers
    )
    assert patched.status_code == 200
    assert (patched.json["name"], patched.json["description"]) == ("payments", None)
    listed = client.get("/api/v1/projects?limit=1&page=2", headers=owner.headers).json
    assert listed["pagination"] == {"page": 2, "limit": 1, "total": 2, "pages": 2}
    assert client.delete(url, headers=owner.headers).status_code == 204
    assert client.get(url, headers=owner.headers).status_code == 404


def test_project_names_are_unique_and_bounded(client: FlaskClient, owner: Account) -> None:
    assert (
        client.post("/api/v1/projects", json={"name": "default"}, headers=owner.headers).status_code
        == 409
    )
    assert (
        client.post("/api/v1/projects", json={"name": ""}, headers=owner.headers).status_code == 400
    )
    assert (
        client.post("/api/v1/projects", json={"name": "n" * 101}, headers=owner.headers).status_code
        == 400
    )
    long_description = {"name": "ok", "description": "d" * 501}
    assert (
        client.post("/api/v1/projects", json=long_description, headers=owner.headers).status_code
        == 400
    )


def test_project_with_queues_cannot_be_deleted(client: FlaskClient, owner: Account) -> None:
    project = client.post("/api/v1/projects", json={"name": "p"}, headers=owner.headers).json
    client.post(
        "/api/v1/queues", json={"name": "q", "project_id": project["id"]}, headers=owner.headers
    )
    response = client.delete(f"/api/v1/projects/{project['id']}", headers=owner.headers)
    assert response.status_code == 409


def test_malformed_project_id_is_400(client: FlaskClient, owner: Account) -> None:
    response = client.get("/api/v1/projects/not-a-uuid", headers=owner.headers)
    assert response.status_code == 400
    assert response.json["errors"] == {"id": ["Not a valid UUID."]}
