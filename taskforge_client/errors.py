"""The one exception tree of the client, for REST and gRPC alike.

- ``TaskForgeError`` — base; ``message``, ``status_code`` (HTTP, or the gRPC code's
  HTTP equivalent), ``errors`` (field → messages; empty unless validation failed) and
  ``retry_after`` (seconds the server asked to wait, or None).
    - ``ValidationError`` — 400 / INVALID_ARGUMENT: the input is wrong; see ``errors``.
    - ``Unauthenticated`` — 401 / UNAUTHENTICATED: no, bad, expired or revoked credentials.
    - ``PermissionDenied`` — 403 / PERMISSION_DENIED: the role or scopes do not allow it.
    - ``NotFound`` — 404 / NOT_FOUND: missing, or another organization's.
    - ``Conflict`` — 409 / FAILED_PRECONDITION, ABORTED, ALREADY_EXISTS: the state forbids it.
    - ``PayloadTooLarge`` — 413: the request body is over the server's limit.
    - ``UnsupportedMediaType`` — 415: the body is not JSON.
    - ``RateLimited`` — 429 / RESOURCE_EXHAUSTED: slow down; ``retry_after`` in seconds.
    - ``ServerError`` — any other 5xx / INTERNAL, UNKNOWN.
        - ``Unavailable`` — 502, 503, 504 / UNAVAILABLE: retrying later may succeed.
    - ``TransportError`` — the server could not be reached or the connection broke.
    - ``WaitTimeout`` — a wait for a job's end ran out of time (also a ``TimeoutError``).
"""

from __future__ import annotations

from collections.abc import Mapping


class TaskForgeError(Exception):
    """Base of every error the client raises."""

    status_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        errors: Mapping[str, list[str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.retry_after = retry_after


class ValidationError(TaskForgeError):
    """The request is malformed or a value is out of range (``errors`` names the fields)."""

    status_code = 400


class Unauthenticated(TaskForgeError):
    """Credentials are missing, malformed, expired or revoked."""

    status_code = 401


class PermissionDenied(TaskForgeError):
    """The caller's role or API-key scopes do not allow the action."""

    status_code = 403


class NotFound(TaskForgeError):
    """No such object in the caller's organization."""

    status_code = 404


class Conflict(TaskForgeError):
    """The object's current state forbids the action (duplicate name, cancel a finished job)."""

    status_code = 409


class PayloadTooLarge(TaskForgeError):
    """The request body is larger than the server accepts."""

    status_code = 413


class UnsupportedMediaType(TaskForgeError):
    """The request body was not sent as JSON."""

    status_code = 415


class RateLimited(TaskForgeError):
    """Too many requests; ``retry_after`` says how many seconds to wait (None if unknown)."""

    status_code = 429


class ServerError(TaskForgeError):
    """The server failed to answer the request."""

    status_code = 500


class Unavailable(ServerError):
    """The server or one of its backing services is down; retrying later may succeed."""

    status_code = 503


class TransportError(TaskForgeError):
    """The server could not be reached, or the connection broke before an answer."""


class WaitTimeout(TaskForgeError, TimeoutError):
    """A job did not reach a terminal state within the time given."""


ERROR_BY_STATUS: dict[int, type[TaskForgeError]] = {
    400: ValidationError,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for_status(
    status: int,
    message: str,
    *,
    errors: Mapping[str, list[str]] | None = None,
    retry_after: float | None = None,
) -> TaskForgeError:
    """The exception that stands for an error answer with HTTP ``status``."""
    cls = ERROR_BY_STATUS.get(status) or (ServerError if status >= 500 else TaskForgeError)
    return cls(message, status_code=status, errors=errors, retry_after=retry_after)
