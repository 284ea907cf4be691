"""Every REST error as ``{"error": ..., "status_code": ..., "errors"?: {...}}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from flask_limiter.errors import RateLimitExceeded
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app.db import service_error
from app.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    TaskForgeError,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[TaskForgeError], int] = {
    ValidationFailed: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}

_MESSAGES = {
    400: "The request is malformed",
    404: "Resource not found",
    405: "Method not allowed for this resource",
    413: "The request body is too large",
    415: "Send the request body as application/json",
    422: "The request failed validation",
    429: "Too many requests; slow down",
}


def error_response(status: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    """Build the JSON error response of the contract."""
    body: dict[str, Any] = {"error": message, "status_code": status}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


def _flatten(messages: Any) -> dict[str, Any]:
    """Turn webargs' ``{location: {field: [...]}}`` into ``{field: [...]}``."""
    if not isinstance(messages, dict):
        return {"_request": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def handle_taskforge_error(exc: TaskForgeError) -> Response:
    status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    return error_response(status, exc.message, exc.errors or None)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = _flatten(data["messages"]) if "messages" in data else None
    if errors:
        message = "Validation failed: " + "; ".join(
            f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in errors.items()
        )
    else:
        message = data.get("message") or _MESSAGES.get(status) or exc.description or exc.name
    response = error_response(status, message, errors)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value  # e.g. Allow on 405
    return response


def handle_rate_limit(exc: RateLimitExceeded) -> Response:
    return error_response(429, f"Rate limit exceeded ({exc.description}); retry later")


def handle_database_error(exc: SQLAlchemyError) -> Response:
    error = service_error(exc)
    if error is None:
        logger.exception("database error")
        return error_response(500, "Internal server error")
    if isinstance(error, Unavailable):
        # The driver's own words ("connection refused", "database is locked"), no SQL.
        logger.warning("database unavailable: %s: %s", type(exc).__name__, getattr(exc, "orig", ""))
    return handle_taskforge_error(error)


def handle_redis_error(exc: RedisError) -> Response:
    logger.warning("redis unavailable: %s", exc)
    return error_response(503, "Redis is unavailable; try again shortly")


def handle_unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return error_response(500, "Internal server error")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers; call after ``api.init_app`` so these win."""
    app.register_error_handler(TaskForgeError, handle_taskforge_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(SQLAlchemyError, handle_database_error)
    app.register_error_handler(RedisError, handle_redis_error)
    app.register_error_handler(Exception, handle_unexpected)
