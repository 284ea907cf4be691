"""Per-request plumbing: the runtime, the SQL session and the caller's ``Actor``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.api.errors import handle_database_error
from app.config import Settings
from app.errors import Unauthenticated
from app.runtime import Runtime
from app.services.actors import Actor
from app.services.tokens import bearer_token

_RUNTIME_KEY = "taskforge.runtime"


def runtime() -> Runtime:
    """The running app's runtime: what it shares with every other process."""
    built: Runtime = current_app.extensions[_RUNTIME_KEY]
    return built


def settings() -> Settings:
    """The running app's settings."""
    return runtime().settings


def db() -> Session:
    """The request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = runtime().session()
    return g.db_session


def commit() -> None:
    """Commit the request's work now, before its response is built (publishing after it).

    Hot write paths call it: SQLite holds its one write lock from the first write to
    the commit, so committing before the response is serialised lets the next
    request's INSERT in at once instead of in SQLite's busy-wait steps.
    """
    session: Session | None = g.get("db_session")
    if session is not None:
        session.commit()


def current_actor() -> Actor:
    """Authenticate the request by API key or access token, once per request."""
    if "actor" in g:
        return g.actor
    api_key = request.headers.get("X-API-Key")
    authorization = request.headers.get("Authorization")
    if api_key:
        actor = runtime().actors.for_api_key(db(), api_key)
    elif authorization:
        authenticated = runtime().tokens.authenticate(db(), bearer_token(authorization))
        g.jwt_claims = authenticated.claims
        actor = authenticated.actor
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


def init_app(app: Flask, built: Runtime) -> None:
    """Keep ``built`` for the app's requests; open sessions lazily, commit or roll back after."""
    app.extensions[_RUNTIME_KEY] = built
    app.after_request(_finish_session)
    app.teardown_request(_close_session)
