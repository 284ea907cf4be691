"""The REST edge of request limits; the policy is ``app.services.ratelimit``, shared with gRPC.

Before each request its budgets are spent.  The caller is authenticated exactly as the
view will be, in the same Redis round trip when its actor is cached
(``app.services.admission``; the actor is kept on ``g`` for the view), so a
credential that does not verify counts against the client address.  A refused
request answers 429 with ``Retry-After``; every response carries
``X-RateLimit-Limit/Remaining/Reset`` of the limit closest to running out.
``X-Forwarded-For`` sets the address only behind a configured proxy
(``TASKFORGE_TRUSTED_PROXIES``, via ProxyFix).

Login, registration and password change keep their own per-route limits
(flask-limiter) on top: per address and email, per address, and per user.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter.util import get_remote_address
from sqlalchemy.exc import SQLAlchemyError

from app.api.context import current_actor, db, runtime
from app.api.errors import error_response
from app.errors import TaskForgeError
from app.services.actors import Actor
from app.services.jobs import BATCH_MAX
from app.services.ratelimit import RateLimited, Verdict, identity_bucket

EXEMPT_BLUEPRINTS = frozenset({"health", "metrics"})
BATCH_ENDPOINT = "jobs.JobBatch"


def _client_address() -> str:
    return get_remote_address() or "unknown"


def verified_actor() -> Actor | None:
    """The request's actor when it sent credentials that verify, else None."""
    if not (request.headers.get("X-API-Key") or request.headers.get("Authorization")):
        return None
    try:
        return current_actor()
    except TaskForgeError:
        return None
    except SQLAlchemyError:
        db().rollback()
        return None


def _cost() -> int:
    """What a request spends: one, or one per job of a batch submit."""
    if request.endpoint != BATCH_ENDPOINT:
        return 1
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # answered 400 by the JSON body check
        return 1
    jobs = body.get("jobs") if isinstance(body, dict) else None
    return min(max(len(jobs), 1), BATCH_MAX) if isinstance(jobs, list) else 1


def _spend() -> Response | None:
    gate = runtime().gate
    if gate is None or request.blueprint in EXEMPT_BLUEPRINTS:
        return None
    address, cost = _client_address(), _cost()
    try:
        admission = gate.admit(
            db(),
            authorization=request.headers.get("Authorization"),
            api_key=request.headers.get("X-API-Key"),
            address=address,
            cost=cost,
        )
    except SQLAlchemyError:
        db().rollback()
        admission = gate.admit(db(), authorization=None, api_key=None, address=address, cost=cost)
    if admission.actor is not None:
        # The view's current_actor() uses it: one authentication per request.
        g.actor, g.jwt_claims = admission.actor, admission.claims
    verdict = admission.verdict
    g.rate_verdict = verdict
    if verdict is None or verdict.allowed:
        return None
    response = error_response(429, str(RateLimited(verdict)))
    response.headers["Retry-After"] = str(verdict.retry_after)
    return response


def _headers(response: Response) -> Response:
    verdict: Verdict | None = g.get("rate_verdict")
    # A route with its own limit (login) already described that one.
    if verdict is not None and "X-RateLimit-Limit" not in response.headers:
        response.headers["X-RateLimit-Limit"] = str(verdict.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
        response.headers["X-RateLimit-Reset"] = str(int(verdict.reset_at))
    return response


def init_app(app: Flask) -> None:
    """Spend every request's budgets; call before flask-limiter's ``init_app``."""
    app.before_request(_spend)
    # Registered before flask-limiter's, so this runs after it (Flask reverses them).
    app.after_request(_headers)


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


def password_key() -> str:
    """Count password changes per user (per address when the token does not verify)."""
    actor = verified_actor()
    who = identity_bucket(actor) if actor is not None else f"ip:{_client_address()}"
    return f"password:{who}"


def address_key() -> str:
    """Count per client address."""
    return f"ip:{_client_address()}"
