"""Who a rate limit counts against, and how much each organization gets.

An authenticated request counts against its API key (by prefix) or its user
(by the ``sub`` of a token whose signature and expiry check out).  A credential
that does not verify counts against the client address, so inventing tokens or
keys never buys a fresh bucket, and knowing someone's key prefix never drains
theirs.  ``X-Forwarded-For`` sets the address only behind a configured proxy
(``TASKFORGE_TRUSTED_PROXIES``, via ProxyFix).

The application limit is the platform default plus, for an organization whose
settings carry ``rate_limit``, that limit too: an organization can tighten its
callers' limit, never loosen it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_limiter.util import get_remote_address
from jwt.exceptions import PyJWTError
from limits import parse
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.api.context import current_actor, db, settings
from app.errors import TaskForgeError
from app.models import Organization
from app.services.auth import split_api_key

ORG_RATE_LIMIT_SETTING = "rate_limit"
RATE_LIMIT_MAX_CHARS = 64


@dataclass(frozen=True)
class RateIdentity:
    """The bucket a request counts against and the organization it acts for."""

    key: str
    organization_id: uuid.UUID | None = None


def check_rate_limit(value: Any) -> str:
    """Validate an organization's ``rate_limit`` setting, e.g. ``"600 per minute"``."""
    if not isinstance(value, str) or not 0 < len(value) <= RATE_LIMIT_MAX_CHARS:
        raise ValueError(f"Give a string of 1-{RATE_LIMIT_MAX_CHARS} characters.")
    item = parse(value)
    if item.amount < 1:
        raise ValueError("Allow at least one request.")
    return value


def _address() -> RateIdentity:
    return RateIdentity("ip:" + (get_remote_address() or "unknown"))


def _api_key_identity(raw_key: str) -> RateIdentity:
    parts = split_api_key(raw_key)
    if parts is None:
        return _address()
    try:
        # Authenticating here also serves the view: the actor is cached on ``g``.
        actor = current_actor()
    except TaskForgeError:
        return _address()
    except SQLAlchemyError:
        db().rollback()
        return _address()
    return RateIdentity("key:" + parts[0], actor.organization_id)


def _token_identity(authorization: str) -> RateIdentity:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _address()
    try:
        claims = decode_token(token.strip())
        subject = str(uuid.UUID(str(claims["sub"])))
        organization_id = uuid.UUID(str(claims["org_id"]))
    except (PyJWTError, JWTExtendedException, KeyError, TypeError, ValueError):
        return _address()
    return RateIdentity("user:" + subject, organization_id)


def _resolve_identity() -> RateIdentity:
    api_key = request.headers.get("X-API-Key")
    if api_key:
        return _api_key_identity(api_key)
    authorization = request.headers.get("Authorization")
    if authorization:
        return _token_identity(authorization)
    return _address()


def rate_identity() -> RateIdentity:
    """Resolve the request's rate-limit identity once per request."""
    if "rate_identity" not in g:
        g.rate_identity = _resolve_identity()
    return g.rate_identity


def rate_limit_key() -> str:
    """Count per API key or user when the credential verifies, else per client address."""
    return rate_identity().key


def _organization_limit(organization_id: uuid.UUID) -> str | None:
    try:
        org_settings = db().scalar(
            select(Organization.settings).where(Organization.id == organization_id)
        )
    except SQLAlchemyError:
        db().rollback()
        return None
    value = (org_settings or {}).get(ORG_RATE_LIMIT_SETTING)
    try:
        return check_rate_limit(value) if value is not None else None
    except ValueError:
        return None


def application_limit() -> str:
    """The limit every request shares: the platform default and the organization's own."""
    default = settings().rate_limit_default
    organization_id = rate_identity().organization_id
    own = _organization_limit(organization_id) if organization_id else None
    return f"{default};{own}" if own else default


def _json_object() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def login_key() -> str:
    """Count login attempts per client address and email."""
    email = _json_object().get("email")
    email_part = str(email).strip().lower()[:254] if email else "-"
    return f"login:{get_remote_address()}:{email_part}"


def address_key() -> str:
    """Count per client address."""
    return _address().key
