"""/api-keys: list, create (the secret is shown once), get, revoke."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from taskforge_client.models import ApiKey, ApiKeyCreated, Page, id_of, load, load_page
from taskforge_client.transport import Transport

ApiKeyRef = str | ApiKey


class ApiKeys:
    """The organization's API keys."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self, *, page: int = 1, limit: int = 10) -> Page[ApiKey]:
        """One page of API keys (never their secrets)."""
        body = self._transport.call("GET", "api-keys", params={"page": page, "limit": limit})
        return load_page(ApiKey, "api_keys", body)

    def create(
        self, name: str, scopes: Sequence[str], *, expires_at: datetime | None = None
    ) -> ApiKeyCreated:
        """Create a key with ``scopes`` (e.g. ``["job:read", "job:write"]``); keep its ``key``."""
        body = {
            "name": name,
            "scopes": list(scopes),
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        return load(ApiKeyCreated, self._transport.call("POST", "api-keys", json=body))

    def get(self, api_key: ApiKeyRef) -> ApiKey:
        """Get an API key (never its secret)."""
        return load(ApiKey, self._transport.call("GET", f"api-keys/{id_of(api_key)}"))

    def revoke(self, api_key: ApiKeyRef) -> None:
        """Revoke an API key; requests with it answer 401 from now on."""
        self._transport.call("DELETE", f"api-keys/{id_of(api_key)}")
