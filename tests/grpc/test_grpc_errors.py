"""grpc_service.errors: every service error and outage has its status code and message."""

from __future__ import annotations

import time

import grpc
import pytest
from limits import parse
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from app.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    TaskForgeError,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from app.services.ratelimit import RateLimited, Verdict
from grpc_service.errors import describe, status_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValidationFailed.field("priority", "Must be between 0 and 9."), "INVALID_ARGUMENT"),
        (Unauthenticated("no"), "UNAUTHENTICATED"),
        (PermissionDenied("no"), "PERMISSION_DENIED"),
        (NotFound("no"), "NOT_FOUND"),
        (Conflict("no"), "FAILED_PRECONDITION"),
        (Unavailable("no"), "UNAVAILABLE"),
        (TaskForgeError("no"), "INVALID_ARGUMENT"),
        (
            RateLimited(Verdict(False, parse("3 per minute"), 0, reset_at=time.time() + 20)),
            "RESOURCE_EXHAUSTED",
        ),
        (OperationalError("SELECT 1", {}, Exception("refused")), "UNAVAILABLE"),
        (IntegrityError("INSERT", {}, Exception("duplicate")), "FAILED_PRECONDITION"),
        (RedisConnectionError("refused"), "UNAVAILABLE"),
    ],
)
def test_each_error_has_its_status_code(error: Exception, code: str) -> None:
    answer = status_for(error)
    assert answer is not None
    assert answer[0] is getattr(grpc.StatusCode, code)


@pytest.mark.parametrize(
    "error", [ValueError("bug"), ProgrammingError("SELECT", {}, Exception("typo"))]
)
def test_bugs_have_no_status_of_their_own(error: Exception) -> None:
    assert status_for(error) is None


def test_messages_name_every_field() -> None:
    named = ValidationFailed.field("priority", "Must be between 0 and 9.")
    assert describe(named) == named.message
    unnamed = ValidationFailed("Invalid queue settings", errors={"settings.x": ["Unknown."]})
    assert describe(unnamed) == "Invalid queue settings (settings.x: Unknown.)"
