"""The REST API's application factory: ``create_app`` builds the Flask app on a runtime.

``wsgi.py`` serves ``create_app()``; tests build one per set of settings.  The
runtime (``app.runtime``) holds what the app shares with every other process;
this module adds what only HTTP needs: the request hooks (JSON bodies, security
and CORS headers), flask-smorest, flask-limiter and the blueprints.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api import (
    apikeys,
    auth,
    context,
    dashboard,
    docs,
    flower,
    health,
    jobs,
    metrics,
    monitor,
    organizations,
    projects,
    queue_control,
    queues,
    ratelimit,
    workers,
)
from app.api.errors import error_response, register_error_handlers
from app.api.extensions import limiter, make_api
from app.api.openapi import IdConverter, id_parameter_schema
from app.api.schemas import ErrorSchema
from app.config import Settings, load_settings
from app.redis_client import limits_storage_options, limits_storage_uri
from app.runtime import Runtime
from app.services.validation import json_depth

JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Services bound client documents at 32 levels; the edge refuses far deeper
# bodies before a recursive step (parser, schema, encoder) can overflow.
JSON_MAX_DEPTH = 64
INVALID_JSON = "Validation failed: json: Invalid JSON body."
TOO_DEEP = f"The JSON body nests deeper than {JSON_MAX_DEPTH} levels"

CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-API-Key, Idempotency-Key"
CORS_EXPOSE_HEADERS = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
CORS_MAX_AGE = "600"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the Flask application (REST API, OpenAPI docs, dashboard, health checks)."""
    settings = settings or load_settings(**overrides)
    settings.validate()
    app = Flask(__name__)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    app.config.update(_flask_config(settings))
    api = make_api()
    _init_extensions(app, api, Runtime.from_settings(settings))
    _register_blueprints(app, api)
    register_error_handlers(app)
    app.before_request(_require_json_body)
    app.after_request(_security_headers)
    app.after_request(_cors_headers)
    return app


def _flask_config(settings: Settings) -> dict[str, Any]:
    return {
        "MAX_CONTENT_LENGTH": settings.max_content_length,
        "API_TITLE": "TaskForge",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "API_SPEC_OPTIONS": {"security": [{"bearerAuth": []}, {"apiKey": []}]},
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": f"{docs.ASSETS_PATH}/",
        # flask-limiter keeps only the per-route limits (login, register, password); the
        # limit every request spends is the core's (app.services.ratelimit), shared with gRPC.
        "RATELIMIT_STORAGE_URI": limits_storage_uri(
            settings.redis_url, settings.redis_sentinel_master
        ),
        "RATELIMIT_ENABLED": settings.rate_limit_enabled,
        "RATELIMIT_HEADERS_ENABLED": True,
        # Fail open: a Redis outage must not take the API down with it (the
        # token blocklist, by contrast, fails closed).
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_KEY_PREFIX": "taskforge:ratelimit",
        "RATELIMIT_STORAGE_OPTIONS": limits_storage_options(settings.redis_url),
    }


def _init_extensions(app: Flask, api: Api, runtime: Runtime) -> None:
    api.ERROR_SCHEMA = ErrorSchema
    # Before any blueprint: its rules look the converter up when they are added.
    app.url_map.converters["id"] = IdConverter
    api.init_app(app)
    api.register_converter(IdConverter, id_parameter_schema)
    ratelimit.init_app(app)
    limiter.init_app(app)
    context.init_app(app, runtime)


def _register_blueprints(app: Flask, api: Api) -> None:
    app.register_blueprint(health.blp)
    limiter.exempt(health.blp)
    app.register_blueprint(metrics.blp)
    limiter.exempt(metrics.blp)
    app.register_blueprint(docs.blp)
    limiter.exempt(docs.blp)
    dashboard.init_app(app)
    for module in (auth, organizations, projects, queues, jobs, apikeys, workers, monitor, flower):
        api.register_blueprint(module.blp)
    api.register_blueprint(queue_control.blp)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )


def _require_json_body() -> Response | None:
    if request.method not in JSON_METHODS:
        return None
    if not (request.content_length or request.headers.get("Transfer-Encoding")):
        return None
    if not request.is_json:
        return error_response(415, "Send the request body as application/json")
    return _check_json_body(request.get_data(cache=True))


def _check_json_body(data: bytes) -> Response | None:
    """Refuse JSON that would crash a recursive later step: the parser, the schema, the encoder.

    What SQL can store is the services' rule (``app.services.validation``), shared with gRPC.
    """
    if not data:
        return None
    try:
        document = json.loads(data)
    except RecursionError:
        return error_response(400, TOO_DEEP)
    except ValueError:  # also numbers past Python's 4,300-digit limit
        return error_response(400, INVALID_JSON, {"json": ["Invalid JSON body."]})
    if json_depth(document) > JSON_MAX_DEPTH:
        return error_response(400, TOO_DEEP)
    return None


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _cors_headers(response: Response) -> Response:
    """Let the configured browser origins call the API; add nothing when none are."""
    origins: tuple[str, ...] = context.settings().cors_origins
    if not origins:
        return response
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if not origin or ("*" not in origins and origin not in origins):
        return response
    response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response
