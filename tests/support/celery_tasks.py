"""Celery tasks with retry policies and time limits of their own, as tests run them.

Workers load this module with ``TASKFORGE_TASK_MODULES``; nothing here imports
TaskForge.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from celery import shared_task


class Transient(Exception):
    """A failure the tasks retry."""


class Broken(Exception):
    """A failure no task here lists for a retry."""


@shared_task(bind=True, max_retries=2)
def retry_later(self, countdown: float, *, use_eta: bool = False, exc: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Always ask Celery for a retry in ``countdown`` seconds (as an ETA with ``use_eta``)."""
    when = {"eta": datetime.now(UTC) + timedelta(seconds=countdown)} if use_eta else {}
    delay = {} if use_eta else {"countdown": countdown}
    if not exc:
        raise self.retry(**when, **delay)
    try:
        raise Transient(f"try {self.request.retries + 1}")
    except Transient as error:
        raise self.retry(exc=error, **when, **delay) from error


@shared_task(
    bind=True,
    autoretry_for=(Transient,),
    dont_autoretry_for=(Broken,),
    retry_backoff=2,
    retry_backoff_max=3,
    retry_jitter=False,
    max_retries=2,
)
def backing_off(self, error: str = "transient") -> None:  # type: ignore[no-untyped-def]
    """Fail with ``Transient`` (retried by Celery's backoff) or with an unlisted exception."""
    if error == "transient":
        raise Transient(f"try {self.request.retries + 1}")
    if error == "broken":
        raise Broken("listed in dont_autoretry_for")
    raise ValueError("not listed in autoretry_for")


@shared_task
def plain_failure() -> None:
    """Fail without any retry policy of its own."""
    raise Transient("no policy")


@shared_task(soft_time_limit=1)
def overrun(seconds: float) -> float:
    """Sleep ``seconds``, past the task's own one-second soft limit."""
    time.sleep(seconds)
    return seconds
