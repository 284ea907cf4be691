"""A plain Celery task module, as it was before TaskForge: nothing here imports TaskForge."""

from __future__ import annotations

from celery import shared_task


class TemporaryError(Exception):
    """A failure worth another try."""


@shared_task
def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@shared_task(name="reports.greet")
def greet(name: str, *, punctuation: str = "!") -> str:
    """Greet ``name``."""
    return f"Hello, {name}{punctuation}"


@shared_task(bind=True, autoretry_for=(TemporaryError,), retry_backoff=True, max_retries=2)
def flaky(self, failures: int) -> int:  # type: ignore[no-untyped-def]
    """Fail with TemporaryError on the first ``failures`` tries, then return the try number.

    Celery retries it after 0-1, 0-2 seconds (``retry_backoff``); without it,
    after ``default_retry_delay`` (three minutes).
    """
    if self.request.retries < failures:
        raise TemporaryError(f"try {self.request.retries + 1} failed")
    return int(self.request.retries) + 1
