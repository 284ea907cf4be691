"""Who is calling: call metadata → ``Actor``, exactly as the REST edge reads headers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from flask import Flask
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import ExpiredSignatureError, PyJWTError

from app.db import session_scope
from app.errors import Unauthenticated
from app.services.actors import Actor
from app.services.auth import actor_for_api_key, actor_for_token
from app.tokens import TokenStore

_actor: ContextVar[Actor] = ContextVar("taskforge_grpc_actor")


def current_actor() -> Actor:
    """The actor of the call being served (set by the interceptor)."""
    try:
        return _actor.get()
    except LookupError:
        raise Unauthenticated("Authentication required") from None


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Make ``actor`` the current actor for the duration of the block."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


class Authenticator:
    """Verify ``authorization: Bearer <jwt>`` or ``x-api-key`` metadata."""

    def __init__(self, flask_app: Flask, database_url: str) -> None:
        self._flask_app = flask_app
        self._tokens: TokenStore = flask_app.extensions["taskforge.tokens"]
        self._database_url = database_url

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Actor:
        """Return the actor the metadata's credentials stand for."""
        headers = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
        api_key = headers.get("x-api-key")
        if api_key:
            with session_scope(self._database_url) as session:
                return actor_for_api_key(session, api_key)
        authorization = headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("Send the token as 'authorization: Bearer <token>'")
            claims = self._access_claims(token.strip())
            with session_scope(self._database_url) as session:
                return actor_for_token(session, claims)
        raise Unauthenticated(
            "Authentication required: send 'authorization: Bearer <token>' or 'x-api-key' metadata"
        )

    def _access_claims(self, token: str) -> dict[str, Any]:
        """Decode with the REST app's JWT settings; refuse refresh and revoked tokens."""
        with self._flask_app.app_context():
            try:
                claims: dict[str, Any] = decode_token(token)
            except ExpiredSignatureError as exc:
                raise Unauthenticated("The token has expired; refresh it or log in again") from exc
            except (PyJWTError, JWTExtendedException) as exc:
                raise Unauthenticated(f"Invalid token: {exc}") from exc
        if claims.get("type") != "access":
            raise Unauthenticated("Not an access token")
        jti = claims.get("jti")
        if not isinstance(jti, str):
            raise Unauthenticated("Invalid token: it carries no id (jti)")
        if self._tokens.is_revoked(jti, claims.get("family")):
            raise Unauthenticated("The token has been revoked")
        return claims
