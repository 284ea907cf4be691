"""The job handler registry and the four built-in job types.

A handler is a plain function of the job's payload registered by job type::

    from tasks.handlers import job

    @job("send_email")
    def send_email(payload):
        ...

Workers import the modules listed in ``TASKFORGE_HANDLER_MODULES``
(comma-separated) so their ``@job`` decorators run.  A job whose type has no
handler fails with a clear error; it is never dropped silently.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

Handler = Callable[[Any], Any]
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobContext:
    """What a handler may want to know besides its payload."""

    job_id: str
    attempt: int
    max_attempts: int


_REGISTRY: dict[str, Callable[[Any, JobContext], Any]] = {}


class UnknownJobType(LookupError):
    """No handler is registered for a job type."""


class JobFailed(Exception):
    """Raised by a handler to fail the attempt with a plain message."""


def job(name: str, *, with_context: bool = False) -> Callable[[H], H]:
    """Register the decorated function as the handler of job type ``name``.

    With ``with_context=True`` the handler also receives a :class:`JobContext`.
    """

    def decorate(func: H) -> H:
        register(name, func if with_context else lambda payload, _ctx: func(payload))
        return func

    return decorate


def register(name: str, handler: Callable[[Any, JobContext], Any]) -> None:
    """Register ``handler(payload, context)`` as the handler of job type ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"job type {name!r} is already registered")
    _REGISTRY[name] = handler


def get_handler(name: str) -> Callable[[Any, JobContext], Any]:
    """Return the handler of ``name`` or raise ``UnknownJobType``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownJobType(f"No handler is registered for job type '{name}'") from None


def has_handler(name: str) -> bool:
    """Tell whether this process can run job type ``name``."""
    return name in _REGISTRY


def registered_job_types() -> list[str]:
    """Names of every registered job type."""
    return sorted(_REGISTRY)


def load_handler_modules(spec: str) -> None:
    """Import each comma-separated module so its handlers register."""
    for module in filter(None, (part.strip() for part in spec.split(","))):
        importlib.import_module(module)


def _mapping(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {}


@job("echo")
def echo(payload: Any) -> Any:
    """Return the payload unchanged."""
    return payload


@job("sleep")
def sleep(payload: Any) -> dict[str, float]:
    """Sleep ``payload["seconds"]`` seconds (at most an hour)."""
    seconds = _mapping(payload).get("seconds", 1)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= 3600
    ):
        raise JobFailed("sleep needs {'seconds': a number between 0 and 3600}")
    time.sleep(seconds)
    return {"slept": float(seconds)}


@job("fail")
def fail(payload: Any) -> None:
    """Always fail, with ``payload["message"]`` as the error."""
    raise JobFailed(str(_mapping(payload).get("message", "fail job failed as requested")))


@job("flaky", with_context=True)
def flaky(payload: Any, ctx: JobContext) -> dict[str, int]:
    """Fail the first ``payload["failures"]`` attempts, then succeed."""
    failures = _mapping(payload).get("failures", 1)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise JobFailed("flaky needs {'failures': a non-negative integer}")
    if ctx.attempt <= failures:
        raise JobFailed(f"flaky failure {ctx.attempt} of {failures}")
    return {"succeeded_on_attempt": ctx.attempt}
