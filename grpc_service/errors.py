"""The one mapping from service-layer errors, rate limits and outages to gRPC status codes."""

from __future__ import annotations

import grpc
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

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
from app.services.ratelimit import RateLimited

STATUS_BY_ERROR: dict[type[TaskForgeError], grpc.StatusCode] = {
    ValidationFailed: grpc.StatusCode.INVALID_ARGUMENT,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    # DESIGN.md §4 names FAILED_PRECONDITION for a state that forbids the call; a
    # duplicate name is one, whether the services' check or the unique index found it.
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def describe(exc: TaskForgeError) -> str:
    """The error's message, followed by the field errors it does not already name."""
    unnamed = {field: msgs for field, msgs in exc.errors.items() if field not in exc.message}
    if not unnamed:
        return exc.message
    details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in unnamed.items())
    return f"{exc.message} ({details})"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status code and message that answer ``exc``; ``None`` when it is a bug."""
    if isinstance(exc, SQLAlchemyError):
        exc = service_error(exc) or exc
    if isinstance(exc, TaskForgeError):
        code = next(
            (code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        return code, describe(exc)
    if isinstance(exc, RateLimited):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, RedisError):
        return grpc.StatusCode.UNAVAILABLE, "Redis is unavailable; try again shortly"
    return None
