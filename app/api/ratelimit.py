"""Who a rate limit counts against."""

from __future__ import annotations

import hashlib

from flask import request
from flask_limiter.util import get_remote_address


def rate_limit_key() -> str:
    """Count per credential when one is presented, else per client address.

    The credential is hashed, never stored; ``X-Forwarded-For`` is honoured only
    when a proxy is configured (``TASKFORGE_TRUSTED_PROXIES``, via ProxyFix).
    """
    credential = request.headers.get("X-API-Key") or request.headers.get("Authorization")
    if credential:
        return "cred:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
    return "ip:" + (get_remote_address() or "unknown")


def login_key() -> str:
    """Count login attempts per client address and email."""
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    email_part = str(email).strip().lower()[:254] if email else "-"
    return f"login:{get_remote_address()}:{email_part}"


def address_key() -> str:
    """Count per client address."""
    return "ip:" + (get_remote_address() or "unknown")
