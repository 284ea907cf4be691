"""API7 Server Side Request Forgery: no input makes TaskForge fetch a URL.

TaskForge calls nothing on a client's behalf (no webhooks, no callbacks), so the
test is that the contract has no URL-typed input at all; adding one must come
with an allow-list and its own tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask.testing import FlaskClient

URL_FORMATS = {"uri", "url", "uri-reference", "iri", "iri-reference", "uri-template", "hostname"}
URL_NAMES = re.compile(r"(url|uri|href|callback|webhook|hook|endpoint|host|redirect)", re.I)
# Reviewed names that look like addresses but are never connected to.
NOT_FETCHED = {
    # A Celery worker's node name ("celery@box"): shown, and the destination of control
    # commands sent through the broker; TaskForge opens no connection to it.
    "hostname",
}


def _schema_nodes(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            yield from _schema_nodes(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _schema_nodes(child, f"{path}[{index}]")


def _spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def test_no_input_is_url_typed(client: FlaskClient) -> None:
    spec = _spec(client)
    found = [
        path
        for path, node in _schema_nodes({"paths": spec["paths"], "schemas": spec["components"]})
        if node.get("format") in URL_FORMATS
    ]
    assert found == []


def test_no_input_field_is_named_like_a_url(client: FlaskClient) -> None:
    spec = _spec(client)
    names = []
    for schema in spec["components"]["schemas"].values():
        names.extend(schema.get("properties", {}))
    for operations in spec["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                names.extend(p["name"] for p in operation.get("parameters", []))
    assert names, "the scan found no fields at all"
    assert [n for n in names if URL_NAMES.search(n) and n not in NOT_FETCHED] == []
