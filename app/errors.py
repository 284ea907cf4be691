"""The one exception tree of the service layer.

Services raise these; each edge maps them once (``app/api/errors.py`` to HTTP,
``grpc_service/errors.py`` to gRPC status codes).

- ``TaskForgeError`` — base; carries a human-readable message.
    - ``ValidationFailed`` — the input is wrong; ``errors`` maps fields to messages.
    - ``Unauthenticated`` — no, bad, expired or revoked credentials.
    - ``PermissionDenied`` — authenticated, but the role or scope does not allow it.
    - ``NotFound`` — missing, or belongs to another organization (indistinguishable).
    - ``Conflict`` — the current state forbids it (duplicate name, cancel a finished job).
    - ``Unavailable`` — a backing service (SQL, broker) does not answer.
"""

from __future__ import annotations


class TaskForgeError(Exception):
    """Base of every error the service layer raises on purpose."""

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ValidationFailed(TaskForgeError):
    """The request is malformed or a value is out of range."""

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(f"Invalid value for {name}: {message}", errors={name: [message]})


class Unauthenticated(TaskForgeError):
    """Credentials are missing, malformed, expired or revoked."""


class PermissionDenied(TaskForgeError):
    """The actor lacks the permission the action needs."""


class NotFound(TaskForgeError):
    """No such object in the actor's organization."""


class Conflict(TaskForgeError):
    """The object's current state forbids the action."""


class Unavailable(TaskForgeError):
    """A backing service does not answer; retrying later may succeed."""
