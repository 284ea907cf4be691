"""Helpers shared by the security tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask.testing import FlaskClient

from tests.conftest import Account

FORBIDDEN_KEYS = frozenset({"password", "password_hash", "key_hash", "secret"})
CREATE_KEY = ("POST", "/api/v1/api-keys")
# The OpenAPI document names the fields (``password``, ``key``); it holds no values.
DOCUMENTATION = "/api/v1/openapi.json"


def _walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(where, key, value)`` for every member and item of a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield f"{path}.{key}", key, child
            yield from _walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield f"{path}[{index}]", None, child
            yield from _walk(child, f"{path}[{index}]")


def leaked_secrets(method: str, path: str, body: Any) -> list[str]:
    """Name every place in ``body`` that shows a secret."""
    leaks: list[str] = []
    if path == DOCUMENTATION:
        return leaks
    for where, key, value in _walk(body):
        if where.startswith("$.errors."):
            continue  # validation errors name the offending field, e.g. "password"
        if key in FORBIDDEN_KEYS:
            leaks.append(where)
        if key == "key" and (method, path.rstrip("/")) != CREATE_KEY:
            leaks.append(where)
        if isinstance(value, str) and value.startswith("$argon2"):
            leaks.append(where)
    return leaks


def bearer(token: str) -> dict[str, str]:
    """Headers that present ``token``."""
    return {"Authorization": f"Bearer {token}"}


def create_key(
    client: FlaskClient, account: Account, scopes: list[str], name: str = "ci"
) -> dict[str, Any]:
    """Create an API key as ``account``; the body includes the one-time ``key``."""
    response = client.post(
        "/api/v1/api-keys", json={"name": name, "scopes": scopes}, headers=account.headers
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def key_headers(key: dict[str, Any]) -> dict[str, str]:
    """Headers that present an API key created by ``create_key``."""
    return {"X-API-Key": key["key"]}
