"""Who the client acts as: an API key, or an access token with its refresh token."""

from __future__ import annotations

import threading
from collections.abc import Callable

from taskforge_client.models import Tokens

TokensCallback = Callable[[Tokens], None]


class Credentials:
    """The API key or tokens that every request of one client sends.

    An access token wins over an API key, so a client that logs in acts as that user.
    ``on_tokens`` is called with every new pair of tokens (login, refresh), so a caller
    can keep them: a refresh token is single-use, and presenting a used one again
    revokes its whole session.
    """

    def __init__(
        self,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        on_tokens: TokensCallback | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.api_key = api_key
        self.on_tokens = on_tokens

    def headers(self) -> dict[str, str]:
        """The authentication headers of a request; empty when there are no credentials."""
        with self._lock:
            if self.access_token:
                return {"Authorization": f"Bearer {self.access_token}"}
            if self.api_key:
                return {"X-API-Key": self.api_key}
            return {}

    def can_refresh(self, sent: dict[str, str]) -> bool:
        """Whether a 401 to a request that sent ``sent`` may be cured by refreshing."""
        with self._lock:
            return "Authorization" in sent and self.refresh_token is not None

    def set_tokens(self, tokens: Tokens) -> None:
        """Use new tokens from now on (a refresh answer may keep the old refresh token)."""
        with self._lock:
            self.access_token = tokens.access_token
            if tokens.refresh_token:
                self.refresh_token = tokens.refresh_token
            kept = Tokens(
                access_token=tokens.access_token,
                token_type=tokens.token_type,
                expires_in=tokens.expires_in,
                refresh_token=self.refresh_token,
            )
        if self.on_tokens is not None:
            self.on_tokens(kept)

    def clear_tokens(self) -> None:
        """Forget the tokens (after a logout)."""
        with self._lock:
            self.access_token = None
            self.refresh_token = None
