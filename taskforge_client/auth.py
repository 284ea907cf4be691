"""/auth: register, log in, refresh, validate, log out."""

from __future__ import annotations

from taskforge_client.models import Registered, TokenInfo, Tokens, load
from taskforge_client.transport import Transport


class Auth:
    """Accounts and tokens; a login makes the client act as that user."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def register(self, email: str, password: str, organization_name: str) -> Registered:
        """Create an organization and its owner (then log in)."""
        body = {"email": email, "password": password, "organization_name": organization_name}
        return load(Registered, self._transport.call("POST", "auth/register", json=body))

    def login(self, email: str, password: str) -> Tokens:
        """Exchange email and password for tokens, and use them from now on."""
        body = {"email": email, "password": password}
        tokens = load(Tokens, self._transport.call("POST", "auth/login", json=body))
        self._transport.credentials.set_tokens(tokens)
        return tokens

    def refresh(self) -> Tokens:
        """Trade the refresh token for new tokens now (the client also does it on expiry)."""
        return self._transport.refresh()

    def validate(self) -> TokenInfo:
        """Ask the server whose credentials these are and when they expire."""
        return load(TokenInfo, self._transport.call("GET", "auth/validate"))

    def logout(self) -> None:
        """Revoke the access token's session and the refresh token, then forget both."""
        credentials = self._transport.credentials
        refresh = credentials.refresh_token
        body = {"refresh_token": refresh} if refresh else None
        self._transport.call("POST", "auth/logout", json=body)
        credentials.clear_tokens()
