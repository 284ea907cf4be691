"""/auth: register, login, refresh, validate, logout, change password.

The rules of tokens (families, rotation, reuse, logout, generations) are the
core's ``app.services.tokens``; these views only adapt them to HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from flask.views import MethodView

from app.api import schemas
from app.api.context import current_actor, current_token_claims, db, runtime, settings
from app.api.extensions import Blueprint, limiter
from app.api.ratelimit import address_key, login_key, password_key
from app.errors import Unauthenticated
from app.services import auth as auth_service

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


def _login_limit() -> str:
    return settings().rate_limit_login


def _register_limit() -> str:
    return settings().rate_limit_register


PUBLIC: dict[str, Any] = {"security": []}


@blp.route("/register")
class Register(MethodView):
    decorators: ClassVar[list[Callable[..., Any]]] = [
        limiter.limit(_register_limit, key_func=address_key)
    ]

    @blp.arguments(schemas.RegisterSchema)
    @blp.response(201, schemas.RegisteredSchema)
    @blp.alt_response(409, response="CONFLICT")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    @blp.doc(**PUBLIC)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Create an organization and its owner."""
        created = auth_service.register(db(), **args)
        return {
            "user_id": created.user.id,
            "organization_id": created.organization.id,
            "message": "Registered; log in at /api/v1/auth/login",
        }


@blp.route("/login")
class Login(MethodView):
    decorators: ClassVar[list[Callable[..., Any]]] = [
        limiter.limit(_login_limit, key_func=login_key)
    ]

    @blp.arguments(schemas.LoginSchema)
    @blp.response(200, schemas.TokensSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    @blp.doc(**PUBLIC)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Exchange email and password for an access and a refresh token."""
        user = auth_service.authenticate(db(), **args)
        return asdict(runtime().tokens.issue(user))


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.arguments(schemas.RefreshSchema)
    @blp.response(200, schemas.TokensSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.doc(**PUBLIC)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Rotate a refresh token: a new access and refresh token; the old one is revoked."""
        return asdict(runtime().tokens.refresh(db(), args["refresh_token"]))


@blp.route("/validate")
class Validate(MethodView):
    @blp.response(200, schemas.ValidateSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    def get(self) -> dict[str, Any]:
        """Check the presented access token and tell whose it is."""
        actor = current_actor()
        claims = current_token_claims()
        return {
            "valid": True,
            "user_id": str(actor.user_id) if actor.user_id else None,
            "organization_id": str(actor.organization_id),
            "role": actor.role,
            "expires_at": datetime.fromtimestamp(claims["exp"], UTC) if claims else None,
        }


@blp.route("/logout")
class Logout(MethodView):
    @blp.arguments(schemas.LogoutSchema, required=False)
    @blp.response(204)
    @blp.alt_response(401, response="UNAUTHORIZED")
    def post(self, args: dict[str, Any]) -> None:
        """Revoke the presented access token, its session and a refresh token sent in the body."""
        claims = current_token_claims()
        if not claims:
            raise Unauthenticated("Log out with an access token, not an API key")
        runtime().tokens.logout(claims, (args or {}).get("refresh_token"))


@blp.route("/password")
class Password(MethodView):
    decorators: ClassVar[list[Callable[..., Any]]] = [
        limiter.limit(_login_limit, key_func=password_key)
    ]

    @blp.arguments(schemas.PasswordChangeSchema)
    @blp.response(200, schemas.TokensSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Change your password: every session ends, this one goes on with the tokens returned."""
        actor = current_actor()
        claims = current_token_claims()
        if not claims or actor.user_id is None:
            raise Unauthenticated("Change a password with an access token, not an API key")
        user = auth_service.change_password(db(), user_id=actor.user_id, **args)
        return asdict(runtime().tokens.issue(user, family=claims.get("family")))
