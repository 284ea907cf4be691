"""A Celery task's own retry policy and time limits, run by the executor in-process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import MaxRetriesExceededError, Retry
from flask.testing import FlaskClient
from kombu.message import Message
from kombu.serialization import dumps
from sqlalchemy import update

from app.celery_names import RUN_JOB
from app.config import Settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobStatus, utcnow
from app.runtime import Runtime
from app.services.execution import NO_RETRY, QUEUE_BACKOFF, AfterFailure
from tasks import celery_tasks, executor, worker
from tasks.celery_app import app
from tasks.handlers import has_handler
from tasks.publisher import HARD_LIMIT_GRACE_SECONDS, flush_stamps
from tests.conftest import Account
from tests.support import celery_tasks as module
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.execution import execute, run_job_task, stored_job

MODULE = "tests.support.celery_tasks"
# A queue backoff no test waits for: a delay of the task's own is the only short one.
QUEUE_BACKOFF_SECONDS = 3600


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> Iterator[None]:
    if not has_handler(module.overrun.name):
        celery_tasks.load_task_modules(MODULE)
    yield


def _submit(client: FlaskClient, owner: Account, task: Any, *args: Any, **body: Any) -> str:
    queue = create_queue(
        client,
        owner.headers,
        f"q-{uuid.uuid4().hex[:8]}",
        retry_backoff_seconds=QUEUE_BACKOFF_SECONDS,
        retry_backoff_max_seconds=QUEUE_BACKOFF_SECONDS,
    )
    payload = {"args": list(args), "kwargs": body.pop("kwargs", {})}
    job = submit_job(client, owner.headers, queue, job_type=task.name, payload=payload, **body)
    flush_stamps()
    return str(job["id"])


def _make_due(settings: Settings, job_id: str) -> None:
    with session_scope(settings.database_url) as session:
        due = utcnow() - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(available_at=due))


def _run(settings: Settings, job_id: str, attempts: int) -> list[str]:
    """Run ``attempts`` attempts, each as soon as it may; return their outcomes."""
    outcomes = []
    for attempt in range(attempts):
        if attempt:
            _make_due(settings, job_id)
        outcomes.append(str(execute(job_id, attempt, "w@h", settings.database_url)))
    return outcomes


def _retry_delay(settings: Settings, job_id: str) -> float:
    """Seconds between the last failed attempt's end and the job's next due time."""
    job = stored_job(settings.database_url, job_id)
    last = job_attempts(settings, job_id)[-1]
    assert job.status is JobStatus.PENDING and job.available_at and last.finished_at
    return (job.available_at - last.finished_at).total_seconds()


@pytest.mark.parametrize("use_eta", [False, True])
def test_an_explicit_retry_waits_its_countdown_and_ends_after_max_retries(
    client: FlaskClient, owner: Account, settings: Settings, use_eta: bool
) -> None:
    job_id = _submit(
        client, owner, module.retry_later, 60, kwargs={"use_eta": use_eta}, max_attempts=5
    )
    assert _run(settings, job_id, 1) == ["retrying"]
    assert 55 <= _retry_delay(settings, job_id) <= 60, "the task's countdown, not the queue's"
    assert _run(settings, job_id, 3)[1:] == ["retrying", "failed"]
    done = stored_job(settings.database_url, job_id)
    # max_retries=2: Celery gives up after the third try though the job allows five.
    assert (done.status, done.attempt_count, done.error) == (JobStatus.FAILED, 3, "try 3")
    attempts = job_attempts(settings, job_id)
    assert [a.status for a in attempts] == [AttemptStatus.FAILED] * 3


def test_max_retries_exceeded_is_final(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job_id = _submit(client, owner, module.retry_later, 5, kwargs={"exc": False}, max_attempts=5)
    assert _run(settings, job_id, 3) == ["retrying", "retrying", "failed"]
    done = stored_job(settings.database_url, job_id)
    assert done.status is JobStatus.FAILED and "Can't retry" in (done.error or "")


def test_autoretry_waits_the_tasks_backoff_until_max_retries(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job_id = _submit(client, owner, module.backing_off, max_attempts=5)
    assert _run(settings, job_id, 1) == ["retrying"]
    # retry_backoff=2, no jitter: 2 * 2**0, then 2 * 2**1 capped by retry_backoff_max=3.
    assert _retry_delay(settings, job_id) == pytest.approx(2, abs=0.01)
    assert _run(settings, job_id, 2)[1:] == ["retrying"]
    assert _retry_delay(settings, job_id) == pytest.approx(3, abs=0.01)
    assert _run(settings, job_id, 3)[2:] == ["failed"]
    done = stored_job(settings.database_url, job_id)
    assert (done.status, done.attempt_count, done.error) == (JobStatus.FAILED, 3, "try 3")


@pytest.mark.parametrize(
    ("error", "message"),
    [("other", "not listed in autoretry_for"), ("broken", "listed in dont_autoretry_for")],
)
def test_an_exception_autoretry_does_not_cover_is_final(
    client: FlaskClient, owner: Account, settings: Settings, error: str, message: str
) -> None:
    job_id = _submit(client, owner, module.backing_off, error, max_attempts=5)
    assert _run(settings, job_id, 1) == ["failed"]
    done = stored_job(settings.database_url, job_id)
    assert (done.status, done.attempt_count, done.error) == (JobStatus.FAILED, 1, message)


def test_the_rule_of_each_failure() -> None:
    retry_later, backing_off = module.retry_later.name, module.backing_off.name
    assert celery_tasks.after_failure(retry_later, Retry(when=7)) == AfterFailure(delay_seconds=7)
    assert celery_tasks.after_failure(retry_later, Retry()) == QUEUE_BACKOFF
    assert celery_tasks.after_failure(retry_later, MaxRetriesExceededError()) == NO_RETRY
    assert celery_tasks.after_failure(retry_later, ValueError()) == QUEUE_BACKOFF
    assert celery_tasks.after_failure(backing_off, ValueError()) == NO_RETRY
    assert celery_tasks.after_failure("echo", MaxRetriesExceededError()) == QUEUE_BACKOFF


def test_a_tasks_own_time_limit_tightens_the_queues_only() -> None:
    overrun, plain = module.overrun.name, module.plain_failure.name
    assert celery_tasks.time_limit(overrun, 60) == 1
    assert celery_tasks.time_limit(overrun, 0.5) == 0.5
    # The app's configured task_soft_time_limit is not the task's own limit.
    assert celery_tasks.time_limit(plain, 60) == 60
    assert celery_tasks.time_limit(None, 60) == 60


def test_the_celery_state_follows_the_tasks_rule(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
) -> None:
    monkeypatch.setattr(worker, "_runtime", runtime)
    retried = _submit(client, owner, module.retry_later, 60, max_attempts=5)
    with pytest.raises(Retry) as retry:
        run_job_task(retried, 0)
    assert isinstance(retry.value.exc, module.Transient), "RETRY with the task's own exception"
    final = _submit(client, owner, module.backing_off, "other", max_attempts=5)
    with pytest.raises(ValueError, match="not listed"):
        run_job_task(final, 0)
    assert stored_job(settings.database_url, final).status is JobStatus.FAILED


def _request(job_type: str, soft: int) -> celery_tasks.JobRequest:
    """The request a worker's main process makes of a ``run_job`` message from the publisher."""
    sent = app.amqp.as_task_v2(
        "job:0",
        RUN_JOB,
        args=["job", 0],
        kwargs={"job_type": job_type},
        soft_time_limit=soft,
        time_limit=soft + HARD_LIMIT_GRACE_SECONDS,
    )
    content_type, encoding, body = dumps(sent.body, serializer="json")
    message = Message(
        body=body,
        content_type=content_type,
        content_encoding=encoding,
        headers=sent.headers,
        properties=sent.properties,
        delivery_info={},
    )
    return celery_tasks.JobRequest(message, app=app, task=executor.run_job)


def test_the_worker_applies_the_tighter_of_the_queues_and_the_tasks_limits() -> None:
    grace = HARD_LIMIT_GRACE_SECONDS
    assert tuple(_request(module.overrun.name, 60).time_limits) == (1 + grace, 1)
    assert tuple(_request(module.plain_failure.name, 60).time_limits) == (60 + grace, 60)
    assert tuple(_request("echo", 60).time_limits) == (60 + grace, 60)
