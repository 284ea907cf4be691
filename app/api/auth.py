"""/auth: register, login, refresh, validate, logout, change password.

Every token of one login carries the same ``family`` claim.  Refreshing rotates
the refresh token; presenting a rotated one again revokes the whole family, and
logging out revokes the family of the presented access token.  Every token also
carries the user's token generation (``gen``): changing the password raises it,
which ends all the user's sessions at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from flask.views import MethodView
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError

from app.api import schemas
from app.api.context import current_actor, current_token_claims, db, settings, token_store
from app.api.ratelimit import address_key, login_key, password_key
from app.errors import Unauthenticated
from app.extensions import Blueprint, limiter
from app.services import auth as auth_service

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


def _login_limit() -> str:
    return settings().rate_limit_login


def _register_limit() -> str:
    return settings().rate_limit_register


def _refresh_lifetime() -> int:
    return settings().refresh_token_days * 24 * 3600


PUBLIC: dict[str, Any] = {"security": []}


def _issue_tokens(
    user_id: str, claims: dict[str, Any], *, with_refresh: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": create_access_token(identity=user_id, additional_claims=claims),
        "token_type": "Bearer",
        "expires_in": settings().access_token_minutes * 60,
    }
    if with_refresh:
        body["refresh_token"] = create_refresh_token(identity=user_id, additional_claims=claims)
    return body


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
        family = auth_service.new_token_family()
        return _issue_tokens(str(user.id), auth_service.token_claims(user, family=family))


def _decode_refresh(token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = decode_token(token)
    except (PyJWTError, JWTExtendedException, UnicodeError) as exc:  # e.g. a lone surrogate
        raise Unauthenticated(f"Invalid refresh token: {exc}") from exc
    if claims.get("type") != "refresh":
        raise Unauthenticated("Not a refresh token")
    return claims


def _revoke_family(family: str | None) -> None:
    if family:
        token_store().revoke_family(family, _refresh_lifetime())


def _rotate(claims: dict[str, Any]) -> None:
    """Revoke the presented refresh token; a second use revokes its whole family."""
    family = claims.get("family")
    if token_store().is_revoked(claims["jti"], family):
        # Revoked already, by rotation or logout: the token leaked, so end its session.
        _revoke_family(family)
        raise Unauthenticated(
            "This refresh token was already used or revoked; its session is now revoked"
        )
    if not token_store().consume(claims["jti"], claims["exp"]):
        _revoke_family(family)
        raise Unauthenticated("This refresh token was already used; its session is now revoked")


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.arguments(schemas.RefreshSchema)
    @blp.response(200, schemas.TokensSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.doc(**PUBLIC)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Rotate a refresh token: a new access and refresh token; the old one is revoked."""
        claims = _decode_refresh(args["refresh_token"])
        user = auth_service.user_for_token(db(), claims)
        _rotate(claims)
        family = claims.get("family") or auth_service.new_token_family()
        return _issue_tokens(str(user.id), auth_service.token_claims(user, family=family))


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
        token_store().revoke(claims["jti"], claims["exp"])
        _revoke_family(claims.get("family"))
        refresh = (args or {}).get("refresh_token")
        if refresh:
            refresh_claims = _decode_refresh(refresh)
            if refresh_claims["sub"] != claims["sub"]:
                raise Unauthenticated("The refresh token belongs to another user")
            token_store().revoke(refresh_claims["jti"], refresh_claims["exp"])
            _revoke_family(refresh_claims.get("family"))


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
        family = claims.get("family") or auth_service.new_token_family()
        return _issue_tokens(str(user.id), auth_service.token_claims(user, family=family))
