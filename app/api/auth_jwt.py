"""flask-jwt-extended callbacks: required claims, the blocklist and the contract's error shape."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_jwt_extended import JWTManager
from flask_jwt_extended.config import config
from jwt.exceptions import InvalidTokenError, MissingRequiredClaimError

from app.api.context import token_store
from app.api.errors import error_response

REQUIRED_CLAIMS = ("sub", "type", "jti", "iat", "exp")
TOKEN_TYPES = frozenset({"access", "refresh"})


def check_claims(claims: dict[str, Any]) -> None:
    """Refuse a token without the claims every TaskForge token carries."""
    for claim in REQUIRED_CLAIMS:
        if claim not in claims:
            raise MissingRequiredClaimError(claim)
    if claims["type"] not in TOKEN_TYPES:
        raise InvalidTokenError('The "type" claim must be "access" or "refresh"')
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise InvalidTokenError('The "jti" claim must be a non-empty string')


def init_jwt(manager: JWTManager) -> None:
    """Answer every token problem with a 401 in the contract's JSON shape."""

    @manager.decode_key_loader
    def _decode_key(_header: dict[str, Any], unverified_claims: dict[str, Any]) -> str:
        # After decoding, flask-jwt-extended fills in a missing "type" (as "access")
        # and "jti" (as None); this hook is the one that sees a token's own claims.
        # It runs for every decode (REST, refresh, gRPC), so all refuse such tokens.
        check_claims(unverified_claims)
        key: str = config.decode_key
        return key

    @manager.token_in_blocklist_loader
    def _revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return token_store().is_revoked(payload["jti"], payload.get("family"))

    @manager.revoked_token_loader
    def _on_revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return error_response(401, "The token has been revoked")

    @manager.expired_token_loader
    def _on_expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return error_response(401, "The token has expired; refresh it or log in again")

    @manager.invalid_token_loader
    def _on_invalid(reason: str) -> Response:
        return error_response(401, f"Invalid token: {reason}")

    @manager.unauthorized_loader
    def _on_missing(reason: str) -> Response:
        return error_response(401, f"Authentication required: {reason}")

    @manager.needs_fresh_token_loader
    def _on_not_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return error_response(401, "A fresh token is required")

    @manager.user_lookup_error_loader
    def _on_lookup(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return error_response(401, "The token's user no longer exists")
