"""Fixtures of the OWASP API Security Top 10 (2023) suite.

Every response a test of this package receives is recorded and, after the test,
scanned: no body may carry a password, a password or key hash, or an argon2
hash string, and only the response that creates an API key may carry ``key``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.api import context
from app.api.app import create_app
from app.config import Settings
from tests.security.support import leaked_secrets


class RecordingClient(FlaskClient):
    """A test client that keeps every response for the secrets scan."""

    recorded: list[tuple[str, str, TestResponse]]

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response = super().open(*args, **kwargs)
        request = response.request
        self.recorded.append((request.method, request.path, response))
        return response


@pytest.fixture
def recorded() -> list[tuple[str, str, TestResponse]]:
    """Every response of the test, in order."""
    return []


@pytest.fixture(autouse=True)
def _no_secrets_in_responses(recorded: list[tuple[str, str, TestResponse]]) -> Iterator[None]:
    yield
    for method, path, response in recorded:
        if response.is_json:
            leaks = leaked_secrets(method, path, response.get_json(silent=True))
            assert not leaks, f"{method} {path} shows secrets at {leaks}"


@pytest.fixture
def make_client(
    recorded: list[tuple[str, str, TestResponse]],
) -> Callable[[Flask], FlaskClient]:
    """Return a recording test client of any app."""

    def make(app: Flask) -> FlaskClient:
        app.test_client_class = RecordingClient
        client = app.test_client()
        client.recorded = recorded  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def built_apps() -> Iterator[list[Flask]]:
    """Apps a test built; their Redis connections are closed after it."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        with app.app_context():
            context.runtime().close()


@pytest.fixture
def app(settings: Settings, built_apps: list[Flask]) -> Flask:
    """The TaskForge Flask app on the test services."""
    built = create_app(settings)
    built_apps.append(built)
    return built


@pytest.fixture
def client(app: Flask, make_client: Callable[[Flask], FlaskClient]) -> FlaskClient:
    """A recording test client of ``app``."""
    return make_client(app)


@pytest.fixture
def app_with(
    settings: Settings, make_client: Callable[[Flask], FlaskClient], built_apps: list[Flask]
) -> Callable[..., FlaskClient]:
    """Build an app on the test services with some settings changed; return its client."""

    def build(**overrides: Any) -> FlaskClient:
        built = create_app(settings.replace(**overrides))
        built_apps.append(built)
        return make_client(built)

    return build
