"""API9 Improper Inventory Management: the OpenAPI document lists exactly the routes served."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

PREFIX = "/api/v1"
DOC_ROUTES = {"/api/v1/openapi.json", "/api/v1/docs"}
# Served under /api/v1 on purpose but outside the OpenAPI document, each with its reason.
UNDOCUMENTED = {
    # Prometheus scrape in text format, guarded by its own TASKFORGE_METRICS_TOKEN.
    ("GET", "/api/v1/metrics"),
}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PUBLIC = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
}


def _spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/api/v1/openapi.json").json  # type: ignore[no-any-return]


def _served(app: Flask) -> set[tuple[str, str]]:
    served = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        if (
            not path.startswith(PREFIX)
            or path in DOC_ROUTES
            or rule.endpoint.startswith("api-docs")
        ):
            continue
        served.update((method, path) for method in (rule.methods or set()) & HTTP_METHODS)
    return served


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method.upper() in HTTP_METHODS
    }


def test_every_served_route_is_documented_and_vice_versa(app: Flask, client: FlaskClient) -> None:
    served, documented = _served(app), _documented(_spec(client))
    assert served, "no routes found under /api/v1"
    assert served >= UNDOCUMENTED, "an exemption outlived its route"
    assert served - documented - UNDOCUMENTED == set(), "served but undocumented"
    assert documented - served == set(), "documented but not served"


def test_every_operation_is_described(client: FlaskClient) -> None:
    spec = _spec(client)
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method.upper() in HTTP_METHODS and not operation.get("summary")
    ]
    assert missing == []


def test_only_sign_up_and_sign_in_are_documented_as_public(client: FlaskClient) -> None:
    spec = _spec(client)
    assert spec["security"] == [{"bearerAuth": []}, {"apiKey": []}]
    public = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method.upper() in HTTP_METHODS and operation.get("security") == []
    }
    assert public == PUBLIC


def test_the_documented_error_shape_is_the_served_one(client: FlaskClient) -> None:
    error = _spec(client)["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "status_code", "errors"}
    assert set(error["required"]) == {"error", "status_code"}
    served = client.get("/api/v1/queues").json
    assert set(served) <= set(error["properties"])


def test_only_one_api_version_is_served(app: Flask) -> None:
    prefixes = {
        rule.rule.split("/")[2]
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert prefixes == {"v1"}
