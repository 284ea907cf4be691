"""TaskForge: a multi-tenant control plane for Celery job queues."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api

from app.api.errors import error_response, register_error_handlers
from app.broker import BrokerProbe
from app.config import Settings, load_settings
from app.extensions import jwt, limiter, make_api
from app.tokens import TokenStore

JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the Flask application (REST API, OpenAPI docs, health checks)."""
    settings = settings or load_settings(**overrides)
    settings.validate()
    app = Flask(__name__)
    app.config.update(_flask_config(settings))
    app.extensions["taskforge.settings"] = settings
    app.extensions["taskforge.tokens"] = TokenStore.from_url(settings.redis_url)
    app.extensions["taskforge.broker"] = BrokerProbe.from_url(settings.redis_url)

    from tasks.dispatch import install as install_publisher

    install_publisher(settings.database_url, settings.redis_url)
    api = make_api()
    _init_extensions(app, api)
    _register_blueprints(app, api)
    register_error_handlers(app)
    app.before_request(_require_json_body)
    app.after_request(_security_headers)
    return app


def _flask_config(settings: Settings) -> dict[str, Any]:
    return {
        "MAX_CONTENT_LENGTH": settings.max_content_length,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "JWT_ALGORITHM": "HS256",
        "JWT_DECODE_ALGORITHMS": ["HS256"],
        "JWT_TOKEN_LOCATION": ["headers"],
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=settings.access_token_minutes),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=settings.refresh_token_days),
        "API_TITLE": "TaskForge",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
        "OPENAPI_REDOC_PATH": "/redoc",
        "OPENAPI_REDOC_URL": "https://cdn.jsdelivr.net/npm/redoc/bundles/redoc.standalone.js",
        "RATELIMIT_STORAGE_URI": settings.redis_url,
        "RATELIMIT_ENABLED": settings.rate_limit_enabled,
        "RATELIMIT_APPLICATION": settings.rate_limit_default,
        "RATELIMIT_HEADERS_ENABLED": True,
        # Fail open: a Redis outage must not take the API down with it (the
        # token blocklist, by contrast, fails closed).
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_KEY_PREFIX": "taskforge:ratelimit",
        "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }


def _init_extensions(app: Flask, api: Api) -> None:
    from app.api import context
    from app.api.auth_jwt import init_jwt

    api.init_app(app)
    jwt.init_app(app)
    init_jwt(jwt)
    limiter.init_app(app)
    context.init_app(app)


def _register_blueprints(app: Flask, api: Api) -> None:
    from app.api import auth, health, jobs, organizations, projects, queues

    app.register_blueprint(health.blp)
    limiter.exempt(health.blp)
    for module in (auth, organizations, projects, queues, jobs):
        api.register_blueprint(module.blp)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )


def _require_json_body() -> Response | None:
    if request.method in JSON_METHODS and request.content_length and not request.is_json:
        return error_response(415, "Send the request body as application/json")
    return None


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
