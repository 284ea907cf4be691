"""API6 Unrestricted Access to Sensitive Business Flows: sign-up and login cannot be automated."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from tests.conftest import PASSWORD, Account


def _register(client: FlaskClient, ip: str) -> Any:
    return client.post(
        "/api/v1/auth/register",
        json={
            "email": f"bot-{uuid.uuid4().hex[:10]}@example.com",
            "password": PASSWORD,
            "organization_name": "Bot farm",
        },
        environ_base={"REMOTE_ADDR": ip},
    )


def _login(client: FlaskClient, email: str, password: str, ip: str) -> Any:
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_registrations_per_address_are_limited(app_with: Callable[..., FlaskClient]) -> None:
    client = app_with(rate_limit_register="2 per hour")
    statuses = [_register(client, "127.0.0.61").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    limited = _register(client, "127.0.0.61")
    assert limited.json["status_code"] == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 3600
    assert _register(client, "127.0.0.62").status_code == 201


def test_default_limits_are_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TASKFORGE_RATE_LIMIT",
        "TASKFORGE_RATE_LIMIT_LOGIN",
        "TASKFORGE_RATE_LIMIT_REGISTER",
    ):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert defaults.rate_limit_default == "1200 per minute"
    assert defaults.rate_limit_login == "10 per minute"
    assert defaults.rate_limit_register == "30 per hour"


def test_guessing_one_accounts_password_does_not_lock_its_owner_out(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_login="3 per minute")
    attempts = [
        _login(client, owner.email, "wrong password", "127.0.0.71").status_code for _ in range(4)
    ]
    assert attempts == [401, 401, 401, 429]
    assert _login(client, owner.email, PASSWORD, "127.0.0.72").status_code == 200


def test_login_limit_counts_emails_case_insensitively(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(rate_limit_login="3 per minute")
    variants = [owner.email, owner.email.upper(), f"  {owner.email}  ", owner.email.title()]
    statuses = [_login(client, v, "wrong password", "127.0.0.73").status_code for v in variants]
    assert statuses == [401, 401, 401, 429]
