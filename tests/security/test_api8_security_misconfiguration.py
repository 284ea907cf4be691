"""API8 Security Misconfiguration: safe headers, no stack traces, no unsafe start, no open CORS."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from flask.testing import FlaskClient

from app.api import context
from app.api.app import create_app
from app.config import ConfigError, Settings, load_settings
from tests.conftest import Account

STRONG_SECRET = "s" * 32
# The development default of earlier releases: public, so never a valid key again.
PUBLISHED_SECRET = "taskforge-development-secret-do-not-use-in-production"
ORIGIN = "https://app.example.com"


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(lambda c, a: c.get("/api/v1/queues", headers=a.headers), id="200"),
        pytest.param(lambda c, a: c.get("/api/v1/queues"), id="401"),
        pytest.param(lambda c, a: c.get("/api/v1/nowhere"), id="404"),
        pytest.param(lambda c, a: c.post("/api/v1/queues", data="x", headers=a.headers), id="415"),
        pytest.param(lambda c, a: c.options("/api/v1/queues"), id="options"),
        pytest.param(lambda c, a: c.get("/healthz"), id="health"),
    ],
)
def test_security_headers_on_every_response(client: FlaskClient, owner: Account, request_) -> None:
    response = request_(client, owner)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_an_unexpected_error_shows_no_stack_trace(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: /srv/taskforge/app.py line 42")

    response = app.test_client().get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json == {"error": "Internal server error", "status_code": 500}
    assert not app.debug
    with app.app_context():
        context.runtime().close()


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("short-secret", id="short"),
        pytest.param("x" * 31, id="31-bytes"),
        pytest.param("", id="empty"),
    ],
)
def test_production_refuses_a_weak_jwt_secret(secret: str) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_settings(env="production", jwt_secret_key=secret)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        create_app(Settings(env="production", jwt_secret_key=secret))


def test_production_refuses_an_unset_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_ENV", "production")
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="must be set"):
        load_settings()


def test_production_accepts_a_32_byte_secret() -> None:
    assert load_settings(env="production", jwt_secret_key=STRONG_SECRET).is_production


def test_production_refuses_an_unguarded_metrics_scrape() -> None:
    with pytest.raises(ConfigError, match="TASKFORGE_METRICS_TOKEN"):
        Settings(env="production", jwt_secret_key=STRONG_SECRET).validate()
    Settings(env="production", jwt_secret_key=STRONG_SECRET, metrics_public=True).validate()


def test_development_signs_with_a_generated_secret_not_a_published_one(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, owner: Account
) -> None:
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    generated = Settings().jwt_secret_key
    assert generated != PUBLISHED_SECRET and len(generated) >= 32
    forged = jwt.encode(
        {"sub": owner.user_id, "type": "access", "jti": "forged", "exp": time.time() + 600},
        PUBLISHED_SECRET,
        algorithm="HS256",
    )
    client = create_app(settings.replace(jwt_secret_key=generated)).test_client()
    response = client.get("/api/v1/queues", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("trusted_proxies", -1),
        ("trusted_proxies", 11),
        ("cors_origins", ("app.example.com",)),
        ("cors_origins", ("https://app.example.com/path",)),
        ("cors_origins", ("ftp://app.example.com",)),
        ("rate_limit_default", "lots"),
        ("rate_limit_login", ""),
    ],
)
def test_unsafe_or_malformed_settings_refuse_to_start(setting: str, value: object) -> None:
    with pytest.raises(ConfigError):
        load_settings(**{setting: value})


def test_hardening_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKFORGE_TRUSTED_PROXIES", "2")
    monkeypatch.setenv("TASKFORGE_CORS_ORIGINS", f"{ORIGIN}, http://localhost:3000")
    loaded = load_settings()
    assert loaded.trusted_proxies == 2
    assert loaded.cors_origins == (ORIGIN, "http://localhost:3000")


def test_hardening_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("TASKFORGE_CORS_ORIGINS", raising=False)
    defaults = Settings()
    assert defaults.trusted_proxies == 0
    assert defaults.cors_origins == ()


def test_cors_is_off_by_default(client: FlaskClient, owner: Account) -> None:
    simple = client.get("/api/v1/queues", headers={**owner.headers, "Origin": ORIGIN})
    preflight = client.options(
        "/api/v1/queues",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    for response in (simple, preflight):
        assert not any(name.startswith("Access-Control-") for name, _ in response.headers)


def test_cors_allows_only_configured_origins(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(cors_origins=(ORIGIN,))
    allowed = client.get("/api/v1/queues", headers={**owner.headers, "Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in allowed.headers["Vary"]
    assert "Retry-After" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers

    other = client.get(
        "/api/v1/queues", headers={**owner.headers, "Origin": "https://evil.example.com"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]

    preflight = client.options(
        "/api/v1/jobs",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]


def test_cors_wildcard_is_explicit(app_with: Callable[..., FlaskClient], owner: Account) -> None:
    client = app_with(cors_origins=("*",))
    response = client.get("/api/v1/queues", headers={**owner.headers, "Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_metrics_are_guarded_unless_explicitly_public(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    assert app_with(metrics_token="").get("/api/v1/metrics").status_code == 401
    public = app_with(metrics_token="", metrics_public=True)
    assert public.get("/api/v1/metrics").status_code == 200


def test_metrics_need_their_token_when_one_is_configured(
    app_with: Callable[..., FlaskClient], owner: Account
) -> None:
    client = app_with(metrics_token=STRONG_SECRET)
    assert client.get("/api/v1/metrics").status_code == 401
    assert client.get("/api/v1/metrics", headers=owner.headers).status_code == 401
    scraped = client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {STRONG_SECRET}"})
    assert scraped.status_code == 200
