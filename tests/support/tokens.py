"""Tokens made by hand for the tests of how credentials fail: expired, or with odd claims."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from app.api import context
from app.services.tokens import ACCESS


def mint(
    app: Flask,
    subject: str,
    *,
    token_type: str = ACCESS,
    claims: dict[str, Any] | None = None,
    expires_in: timedelta | None = None,
) -> str:
    """A token signed by ``app``'s token service, as a login would sign one."""
    with app.app_context():
        return context.runtime().tokens.encode(
            subject, token_type=token_type, claims=claims, expires_in=expires_in
        )


def signing_key(app: Flask) -> str:
    """The secret ``app`` signs its tokens with."""
    with app.app_context():
        return context.settings().jwt_secret_key
