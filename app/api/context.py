"""Per-request plumbing: the SQL session, the caller's ``Actor``, the services' collaborators."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.api.errors import handle_database_error
from app.config import Settings
from app.db import session_factory
from app.errors import Unauthenticated
from app.services.actors import Actor
from app.services.auth import actor_for_api_key, actor_for_token
from app.tokens import TokenStore


def settings() -> Settings:
    """The running app's settings."""
    return current_app.extensions["taskforge.settings"]


def token_store() -> TokenStore:
    """The Redis-backed token blocklist of the running app."""
    return current_app.extensions["taskforge.tokens"]


def db() -> Session:
    """The request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = session_factory(settings().database_url)()
    return g.db_session


def current_actor() -> Actor:
    """Authenticate the request by API key or access token, once per request."""
    if "actor" in g:
        return g.actor
    api_key = request.headers.get("X-API-Key")
    if api_key:
        actor = actor_for_api_key(db(), api_key)
    elif request.headers.get("Authorization"):
        verify_jwt_in_request()
        g.jwt_claims = get_jwt()
        actor = actor_for_token(db(), g.jwt_claims)
    else:
        raise Unauthenticated(
            "Authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'"
        )
    g.actor = actor
    return actor


def current_token_claims() -> dict[str, Any] | None:
    """Claims of the access token that authenticated the request (None for API keys)."""
    current_actor()
    return g.get("jwt_claims")


def _finish_session(response: Response) -> Response:
    """Commit for a successful response, roll back otherwise."""
    session: Session | None = g.pop("db_session", None)
    if session is None:
        return response
    try:
        if response.status_code < 400:
            session.commit()
        else:
            session.rollback()
    except SQLAlchemyError as exc:
        session.rollback()
        return handle_database_error(exc)
    finally:
        session.close()
    return response


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()


def init_app(app: Flask) -> None:
    """Open sessions lazily, commit or roll back after each request."""
    app.after_request(_finish_session)
    app.teardown_request(_close_session)
