"""An unchanged Celery task module runs under TaskForge, tracked, with its own retry rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

import taskforge_client as tfc
from app.config import Settings
from app.db import session_scope
from app.models import Worker
from examples.celery_app import tasks as example
from taskforge_client.celery import attempts_for, submit_task
from tasks.celery_tasks import PAYLOAD_SHAPE, call_arguments
from tasks.handlers import JobFailed
from tests.client.conftest import Signup
from tests.support import celery_tasks as own
from tests.support.workers import WorkerProcess, wait_for

Start = Callable[..., WorkerProcess]
MODULE = "examples.celery_app.tasks"
OWN_OPTIONS = "tests.support.celery_tasks"


@pytest.mark.parametrize(
    ("payload", "call"),
    [
        (None, ([], {})),
        ({"args": [1, 2]}, ([1, 2], {})),
        ({"args": ["a"], "kwargs": {"b": 1}}, (["a"], {"b": 1})),
    ],
)
def test_a_payload_is_the_tasks_call(payload: Any, call: Any) -> None:
    assert call_arguments(payload) == call


@pytest.mark.parametrize("payload", [[1, 2], {"args": 1}, {"kwargs": []}, {"argv": []}])
def test_a_payload_of_another_shape_fails_clearly(payload: Any) -> None:
    with pytest.raises(JobFailed, match="args"):
        call_arguments(payload)
    assert "kwargs" in PAYLOAD_SHAPE


def test_attempts_follow_max_retries() -> None:
    assert attempts_for(example.flaky) == 3
    assert attempts_for(example.add) == 4  # Celery's default max_retries is 3
    assert attempts_for("examples.celery_app.tasks.add") is None


def _advertised(settings: Settings, job_type: str) -> bool:
    with session_scope(settings.database_url) as session:
        return any(job_type in (types or []) for types in session.scalars(select(Worker.job_types)))


@pytest.mark.slow
@pytest.mark.real_workers
def test_an_unchanged_celery_task_module_runs_as_tracked_jobs(
    wsgi_client: Signup, settings: Settings, start_worker: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf = wsgi_client.client
    tf.queues.create("celery-tasks", settings={"retry_backoff_seconds": 0})
    monkeypatch.setenv("TASKFORGE_TASK_MODULES", MODULE)
    worker = start_worker("-c", "1", "-n", "celery-tasks@%h")
    wait_for(
        lambda: _advertised(settings, f"{MODULE}.add"),
        30,
        f"the worker never advertised the tasks:\n{worker.log()[-3000:]}",
    )
    added = submit_task(tf, example.add, [2, 3], queue="celery-tasks")
    greeted = submit_task(tf, "reports.greet", ["Ada"], {"punctuation": "?"}, queue="celery-tasks")
    flaky = submit_task(tf, example.flaky, [1], queue="celery-tasks")
    assert (added.job_type, added.payload) == (f"{MODULE}.add", {"args": [2, 3], "kwargs": {}})
    assert flaky.max_attempts == 3
    assert tf.jobs.wait(added, timeout=60).result == 5, worker.log()[-3000:]
    assert tf.jobs.wait(greeted, timeout=60).result == "Hello, Ada?"
    done = tf.jobs.wait(flaky, timeout=60)
    assert (done.status, done.result, done.attempt_count) == (tfc.JobStatus.SUCCEEDED, 2, 2)
    assert [a.status for a in tf.jobs.stats(flaky).attempts] == ["failed", "succeeded"]

    # A plain Celery message of the same task into the same queue runs nothing untracked.
    producer = Celery(broker=settings.redis_url)
    plain = producer.send_task(f"{MODULE}.add", args=[2, 3], queue=f"tf.{added.queue_id}")
    producer.close()
    wait_for(
        lambda: "refused a plain Celery message" in worker.log(),
        30,
        f"the plain message was not refused:\n{worker.log()[-3000:]}",
    )
    assert f"{plain.id}] succeeded" not in worker.log()


def _gaps(tf: tfc.TaskForge, job: tfc.Job) -> list[timedelta]:
    """Time from each attempt's end to the next one's start."""
    attempts = tf.jobs.stats(job).attempts
    return [b.started_at - a.finished_at for a, b in pairwise(attempts) if a.finished_at]


@pytest.mark.slow
@pytest.mark.real_workers
def test_a_celery_tasks_own_retry_policy_and_time_limit_apply_on_a_real_worker(
    wsgi_client: Signup, settings: Settings, start_worker: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    tf = wsgi_client.client
    queue = tf.queues.create(
        "own-options", settings={"retry_backoff_seconds": 0, "timeout_seconds": 60}
    )
    monkeypatch.setenv("TASKFORGE_TASK_MODULES", f"{OWN_OPTIONS},{MODULE}")
    worker = start_worker("-c", "1", "-n", "own-options@%h")
    wait_for(
        lambda: _advertised(settings, own.overrun.name),
        30,
        f"the worker never advertised the tasks:\n{worker.log()[-3000:]}",
    )
    explicit = submit_task(tf, own.retry_later, [2], queue=queue, max_attempts=5)
    backing_off = submit_task(tf, own.backing_off, queue=queue, max_attempts=5)
    unlisted = submit_task(tf, own.backing_off, ["other"], queue=queue, max_attempts=5)
    overrun = submit_task(tf, own.overrun, [30], queue=queue, max_attempts=2)

    done = tf.jobs.wait(overrun, timeout=60)
    assert (done.status, done.attempt_count) == (tfc.JobStatus.FAILED, 2), worker.log()[-3000:]
    assert done.error == "Timed out after 1 seconds", "the task's soft limit, not the queue's 60"
    # The pool process is free again: the next job runs.
    added = submit_task(tf, example.add, [2, 3], queue=queue)
    assert tf.jobs.wait(added, timeout=60).result == 5

    done = tf.jobs.wait(unlisted, timeout=60)
    assert (done.status, done.attempt_count) == (tfc.JobStatus.FAILED, 1)
    assert done.error == "not listed in autoretry_for"
    for job, delays in ((explicit, [2, 2]), (backing_off, [2, 3])):
        done = tf.jobs.wait(job, timeout=60)
        # Celery's max_retries=2 ends the job after three tries, though it allows five.
        assert (done.status, done.attempt_count, done.error) == (tfc.JobStatus.FAILED, 3, "try 3")
        gaps = _gaps(tf, job)
        assert len(gaps) == 2 and all(
            gap >= timedelta(seconds=delay) for gap, delay in zip(gaps, delays, strict=True)
        ), f"{job.job_type}: the task's own delays {delays}, not the queue's 0: {gaps}"
