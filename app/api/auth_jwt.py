"""flask-jwt-extended callbacks: the blocklist and the contract's error shape."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_jwt_extended import JWTManager

from app.api.context import token_store
from app.api.errors import error_response


def init_jwt(manager: JWTManager) -> None:
    """Answer every token problem with a 401 in the contract's JSON shape."""

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
