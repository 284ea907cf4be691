"""The executor, relay and sweeper, run in-process against real SQL and Redis."""

from __future__ import annotations

import traceback
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery.exceptions import Retry
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

import tests.support.handlers  # noqa: F401 - registers the test handlers
from app.api import context
from app.broker import BrokerProbe, Head, step_list
from app.config import Settings
from app.db import session_scope
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, WorkerStatus, utcnow
from app.runtime import Runtime
from app.services import execution, outbox
from app.services.execution import backoff_seconds, record_success
from app.services.leases import sweep_expired_leases
from app.services.outbox import (
    Dispatch,
    mark_published,
    relay_unpublished,
    republish_held_messages,
    republish_lost_messages,
)
from app.services.queue_settings import QueueSettings
from app.services.routing import MAX_HAND_OFFS, unrunnable_error
from tasks import executor, worker
from tasks.handlers import JobFailed
from tasks.publisher import flush_stamps, send
from tests.conftest import Account
from tests.support import factories
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.execution import claim, execute, run_job_task, stored_job
from tests.support.races import run_together


def _queue(client: FlaskClient, owner: Account, name: str = "work", **settings: Any) -> dict:
    return create_queue(client, owner.headers, name, **{"retry_backoff_seconds": 0, **settings})


def _submit(client: FlaskClient, owner: Account, queue: dict, **body: Any) -> dict:
    job = submit_job(client, owner.headers, queue, **body)
    # A submit's publish stamp is written a moment later, off the request path; the
    # steps below start from the state the job has once it is.
    flush_stamps()
    return job


def _attempts(settings: Settings, job_id: str) -> list[JobAttempt]:
    return job_attempts(settings, job_id)


def _depth(app: Flask, queue: dict) -> int:
    with app.app_context():
        return context.runtime().broker.depth(f"tf.{queue['id']}")


def test_a_duplicate_message_is_dropped(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), payload=[1])
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"
    assert execute(job["id"], 0, "w", settings.database_url) == "dropped"
    assert stored_job(settings.database_url, job["id"]).attempt_count == 1
    assert len(_attempts(settings, job["id"])) == 1


def test_a_message_for_another_attempt_is_dropped(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner))
    assert execute(job["id"], 3, "w", settings.database_url) == "dropped"
    assert execute("not-a-uuid", 0, "w", settings.database_url) == "dropped"
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.PENDING


def test_a_message_without_its_job_type_still_fails_an_unknown_type_clearly(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), job_type="no.such.type", max_attempts=1)
    assert execute(job["id"], 0, "w", settings.database_url) == "failed"
    failed = stored_job(settings.database_url, job["id"])
    assert failed.error == "No handler is registered for job type 'no.such.type'"


def _runner(
    settings: Settings, hostname: str, queue: dict, job_types: list[str], **state: Any
) -> None:
    """Register a live worker consuming ``queue`` that has handlers for ``job_types``."""
    with session_scope(settings.database_url) as session:
        worker = factories.runner(session, hostname, f"tf.{queue['id']}", job_types)
        for name, value in state.items():
            setattr(worker, name, value)


def test_a_job_no_live_worker_can_run_fails_at_once_without_spending_attempts(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue, job_type="no.such.type", max_attempts=3)
    # Workers that are gone or drained do not count.
    _runner(settings, "gone@h", queue, ["no.such.type"], status=WorkerStatus.OFFLINE)
    _runner(settings, "drained@h", queue, ["no.such.type"], drain_mode=True)
    outcome = execute(job["id"], 0, "w@h", settings.database_url, job_type="no.such.type")
    assert outcome == "failed"
    failed = stored_job(settings.database_url, job["id"])
    assert (failed.status, failed.attempt_count) == (JobStatus.FAILED, 0)
    assert failed.error == unrunnable_error("no.such.type")
    assert _attempts(settings, job["id"]) == []


def test_a_job_is_handed_to_a_live_worker_that_has_its_handler_without_an_attempt(
    runtime: Runtime, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    _runner(settings, "w@h", queue, ["echo"])
    _runner(settings, "able@h", queue, ["no.such.type"])
    job = _submit(client, owner, queue, job_type="no.such.type", max_attempts=1)
    depth = runtime.broker.depth
    outcome = execute(job["id"], 0, "w@h", settings.database_url, job_type="no.such.type")
    assert outcome == "handed_on"
    assert depth("able@h.dq2") == 1, "the message waits in the able worker's own queue"
    handed = stored_job(settings.database_url, job["id"])
    assert (handed.status, handed.attempt_count) == (JobStatus.PENDING, 0)
    assert handed.held_since is not None, "the sweeper re-queues it if that worker dies"
    assert _attempts(settings, job["id"]) == []
    # A job handed on again and again (stale advertisements) stops bouncing.
    outcome = execute(
        job["id"], 0, "w@h", settings.database_url, job_type="no.such.type", hops=MAX_HAND_OFFS
    )
    assert outcome == "failed"
    assert "handed on 3 times" in (stored_job(settings.database_url, job["id"]).error or "")


def test_a_paused_queue_holds_a_job_of_a_type_this_worker_lacks(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue, job_type="no.such.type")
    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    outcome = execute(job["id"], 0, "w@h", settings.database_url, job_type="no.such.type")
    assert outcome == "dropped"
    paused = stored_job(settings.database_url, job["id"])
    assert (paused.status, paused.published_at) == (JobStatus.PENDING, None)


def test_a_result_that_is_not_json_fails_the_attempt(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), job_type="test.not_json", max_attempts=1)
    assert execute(job["id"], 0, "w", settings.database_url) == "failed"
    assert "not JSON" in (stored_job(settings.database_url, job["id"]).error or "")


def test_retries_until_max_attempts_then_fails(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), job_type="fail", max_attempts=3)
    assert [execute(job["id"], n, "w", settings.database_url) for n in range(3)] == [
        "retrying",
        "retrying",
        "failed",
    ]
    assert [a.status for a in _attempts(settings, job["id"])] == [AttemptStatus.FAILED] * 3
    done = stored_job(settings.database_url, job["id"])
    assert (done.status, done.attempt_count) == (JobStatus.FAILED, 3)


@given(
    attempt=st.integers(min_value=1, max_value=30),
    base=st.integers(min_value=0, max_value=3600),
    ceiling=st.integers(min_value=0, max_value=86400),
)
def test_backoff_is_bounded_exponential_with_jitter(attempt: int, base: int, ceiling: int) -> None:
    delay = backoff_seconds(
        attempt, QueueSettings(retry_backoff_seconds=base, retry_backoff_max_seconds=ceiling)
    )
    assert 0 <= delay <= min(ceiling, base * 2 ** (attempt - 1))


def test_a_retry_waits_for_its_backoff(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner, retry_backoff_seconds=3600, retry_backoff_max_seconds=3600)
    job = _submit(client, owner, queue, job_type="flaky", payload={"failures": 1})
    assert execute(job["id"], 0, "w", settings.database_url) == "retrying"
    waiting = stored_job(settings.database_url, job["id"])
    assert waiting.status is JobStatus.PENDING
    assert waiting.available_at is not None and waiting.available_at > waiting.updated_at
    if waiting.available_at > utcnow() + timedelta(seconds=1):
        assert execute(job["id"], 1, "w", settings.database_url) == "dropped"


def test_paused_queue_drops_the_message_and_resume_publishes_again(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue)
    assert stored_job(settings.database_url, job["id"]).published_at is not None
    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    assert execute(job["id"], 0, "w", settings.database_url) == "dropped"
    assert stored_job(settings.database_url, job["id"]).published_at is None
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 0
    depth = _depth(app, queue)
    client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers)
    assert stored_job(settings.database_url, job["id"]).published_at is not None
    assert _depth(app, queue) == depth + 1
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_a_late_publish_stamp_cannot_hide_a_job_its_paused_worker_marked_unpublished(
    app: Flask,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = _queue(client, owner)
    publisher = outbox._publisher
    monkeypatch.setattr(outbox, "_publisher", None)  # the API's publish is driven step by step
    job = _submit(client, owner, queue)
    monkeypatch.setattr(outbox, "_publisher", publisher)
    with session_scope(settings.database_url) as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        item = Dispatch.for_job(row, QueueSettings.from_stored(None))
    sent = send([item])  # 1. the API hands the message to Redis,
    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)  # 2. a pause,
    assert execute(job["id"], 0, "w", settings.database_url) == "dropped"  # 3. a refused claim
    assert stored_job(settings.database_url, job["id"]).published_at is None
    mark_published(settings.database_url, sent)  # 4. and only now the API's stamp lands.
    assert stored_job(settings.database_url, job["id"]).published_at is None, (
        "the stale stamp overwrote the reset"
    )
    depth = _depth(app, queue)
    client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers)
    assert _depth(app, queue) == depth + 1
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_a_resume_between_a_refused_claim_and_its_reschedule_sends_a_new_message(
    app: Flask,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue)
    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    reschedule = execution.reschedule_unclaimable

    def resume_first(*args: Any) -> None:
        # The resume commits after the claim saw the queue paused: it publishes
        # only unpublished jobs, and this one still counts as published.
        client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers)
        reschedule(*args)

    monkeypatch.setattr(execution, "reschedule_unclaimable", resume_first)
    depth = _depth(app, queue)
    assert execute(job["id"], 0, "w", settings.database_url) == "dropped"
    assert _depth(app, queue) == depth + 1, "the dropped message was not replaced"
    monkeypatch.setattr(execution, "reschedule_unclaimable", reschedule)
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_jobs_submitted_while_paused_wait_unpublished(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers)
    job = _submit(client, owner, queue)
    assert (job["status"], stored_job(settings.database_url, job["id"]).published_at) == (
        "pending",
        None,
    )
    assert _depth(app, queue) == 0
    client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers)
    assert _depth(app, queue) == 1


def test_an_early_message_is_sent_again_for_its_time(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    due = (utcnow() + timedelta(seconds=30)).isoformat()
    job = _submit(client, owner, queue, scheduled_for=due)
    assert job["status"] == "scheduled"
    depth = _depth(app, queue)
    assert execute(job["id"], 0, "w", settings.database_url) == "dropped"
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.SCHEDULED
    assert _depth(app, queue) == depth + 1


def _make_due(settings: Settings, job_id: str, ago: timedelta) -> None:
    """Move a job's due time (and its held message's) ``ago`` into the past."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None and job.held_since == job.available_at
        due = utcnow() - ago
        session.execute(
            update(Job).where(Job.id == job.id).values(available_at=due, held_since=due)
        )


def _lose_messages(settings: Settings) -> None:
    """Take every message out of the shared queues, as a worker that fetched them would."""
    with redis.Redis.from_url(settings.redis_url) as broker:
        broker.flushdb()


LEASE = timedelta(seconds=30)


def test_a_due_job_whose_eta_message_died_with_its_worker_is_published_again_once(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    job = _submit(
        client, owner, queue, scheduled_for=(utcnow() + timedelta(seconds=20)).isoformat()
    )
    _lose_messages(settings)  # fetched by a worker with its ETA, which then died
    assert republish_held_messages(settings.database_url, after=LEASE) == 0, "not due yet"
    _make_due(settings, job["id"], LEASE - timedelta(seconds=2))
    assert republish_held_messages(settings.database_url, after=LEASE) == 0, "its worker may claim"
    _make_due(settings, job["id"], LEASE + timedelta(seconds=1))
    assert republish_held_messages(settings.database_url, after=LEASE) == 1
    assert _depth(app, queue) == 1
    assert stored_job(settings.database_url, job["id"]).held_since is None, (
        "now waiting in the shared queue"
    )
    assert republish_held_messages(settings.database_url, after=LEASE) == 0, "only once"
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_a_retry_whose_backoff_message_died_with_its_worker_is_published_again(
    app: Flask,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(execution, "backoff_seconds", lambda *_: 20.0)
    queue = _queue(client, owner)
    job = _submit(client, owner, queue, job_type="flaky", payload={"failures": 1})
    assert execute(job["id"], 0, "w", settings.database_url) == "retrying"
    _lose_messages(settings)
    _make_due(settings, job["id"], LEASE + timedelta(seconds=1))
    assert republish_held_messages(settings.database_url, after=LEASE) == 1
    assert execute(job["id"], 1, "w", settings.database_url) == "succeeded"


def test_a_message_waiting_in_the_shared_queue_is_not_held(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner))
    assert stored_job(settings.database_url, job["id"]).held_since is None
    assert republish_held_messages(settings.database_url, after=timedelta(0)) == 0


def test_far_future_jobs_wait_in_sql_until_the_horizon(
    app: Flask, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue, scheduled_for=(utcnow() + timedelta(hours=2)).isoformat())
    assert _depth(app, queue) == 0
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 0
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job["id"]))
            .values(available_at=utcnow() + timedelta(seconds=20))
        )
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 1
    assert _depth(app, queue) == 1


def test_relay_publishes_a_job_committed_without_a_publish(
    app: Flask,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = _queue(client, owner)
    publisher = outbox._publisher
    monkeypatch.setattr(outbox, "_publisher", None)  # the API died right after its commit
    job = _submit(client, owner, queue)
    monkeypatch.setattr(outbox, "_publisher", publisher)  # the relay runs in another process
    assert stored_job(settings.database_url, job["id"]).published_at is None
    assert _depth(app, queue) == 0
    assert relay_unpublished(settings.database_url) == 0, "inside the grace period"
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 1
    assert _depth(app, queue) == 1
    assert stored_job(settings.database_url, job["id"]).published_at is not None
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def _expire_lease(settings: Settings, job_id: str) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job_id))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_sweeper_takes_over_the_job_of_a_dead_worker(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), max_attempts=2)
    assert claim(settings.database_url, uuid.UUID(job["id"]), 0, "doomed") is not None
    assert sweep_expired_leases(settings.database_url) == 0, "the lease is still alive"
    _expire_lease(settings, job["id"])
    assert sweep_expired_leases(settings.database_url) == 1
    requeued = stored_job(settings.database_url, job["id"])
    assert (requeued.status, requeued.attempt_count) == (JobStatus.PENDING, 1)
    assert requeued.published_at is not None
    [lost] = _attempts(settings, job["id"])
    assert (lost.status, lost.worker_name) == (AttemptStatus.LOST, "doomed")
    assert execute(job["id"], 1, "survivor", settings.database_url) == "succeeded"
    assert [a.status for a in _attempts(settings, job["id"])] == [
        AttemptStatus.LOST,
        AttemptStatus.SUCCEEDED,
    ]


def test_sweeper_fails_a_job_whose_attempts_are_spent(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    job = _submit(client, owner, _queue(client, owner), max_attempts=1)
    claim(settings.database_url, uuid.UUID(job["id"]), 0, "doomed")
    _expire_lease(settings, job["id"])
    assert sweep_expired_leases(settings.database_url) == 1
    failed = stored_job(settings.database_url, job["id"])
    assert failed.status is JobStatus.FAILED
    assert "stopped responding" in (failed.error or "")


def test_a_late_result_of_a_swept_attempt_is_ignored(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:

    job = _submit(client, owner, _queue(client, owner), max_attempts=2)
    claimed = claim(settings.database_url, uuid.UUID(job["id"]), 0, "slow")
    assert claimed is not None
    _expire_lease(settings, job["id"])
    sweep_expired_leases(settings.database_url)
    assert record_success(settings.database_url, uuid.UUID(job["id"]), claimed, "late") is False
    assert _attempts(settings, job["id"])[0].status is AttemptStatus.LOST
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.PENDING


def test_cancel_races_a_claim_and_exactly_one_wins(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    for _ in range(10):
        job = _submit(client, owner, queue)
        claimed = claim(settings.database_url, uuid.UUID(job["id"]), 0, "w")
        cancel = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers)
        # A claim that won is cancelled while running: its attempt is recorded.
        assert cancel.status_code == 204
        assert [a.status for a in _attempts(settings, job["id"])] == (
            [AttemptStatus.CANCELLED] if claimed else []
        )
        job2 = _submit(client, owner, queue)
        cancel2 = client.post(f"/api/v1/jobs/{job2['id']}/cancel", headers=owner.headers)
        assert cancel2.status_code == 204
        assert claim(settings.database_url, uuid.UUID(job2["id"]), 0, "w") is None


def test_a_database_outage_retries_the_message_instead_of_dropping_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    unreachable = settings.replace(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(worker, "_runtime", replace(runtime, settings=unreachable))
    args = [str(uuid.uuid4()), 0]
    executor.run_job.push_request(
        id="outage-test", args=args, kwargs={}, retries=0, called_directly=False
    )
    try:
        with pytest.raises(Retry) as retried:
            executor.run_job.run(*args)
    finally:
        executor.run_job.pop_request()
    assert retried.value.when == 1


def test_a_message_lost_by_the_broker_is_published_again(
    app: Flask,
    runtime: Runtime,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    redis_server: Any,
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue)
    depth = runtime.broker.depth
    assert republish_lost_messages(settings.database_url, depth) == 0, "published just now"
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job["id"]))
            .values(published_at=utcnow() - timedelta(minutes=10))
        )
    assert republish_lost_messages(settings.database_url, depth) == 0, "its message still waits"
    with redis.Redis.from_url(settings.redis_url) as broker:
        broker.flushdb()
    assert _depth(app, queue) == 0
    assert republish_lost_messages(settings.database_url, depth) == 1
    assert _depth(app, queue) == 1
    assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_a_message_overtaken_by_a_later_one_is_published_again_while_the_queue_is_busy(
    app: Flask,
    runtime: Runtime,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
) -> None:
    queue = _queue(client, owner)
    first, second, third = (_submit(client, owner, queue, payload=[n]) for n in range(3))
    broker = runtime.broker
    name = f"tf.{queue['id']}"
    assert broker.head(name, 0) == Head(uuid.UUID(first["id"]))
    with session_scope(settings.database_url) as session:
        for job, age in ((first, 60), (second, 50), (third, 40)):
            session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(job["id"]))
                .values(published_at=utcnow() - timedelta(seconds=age))
            )

    def republish() -> int:
        return republish_lost_messages(settings.database_url, broker.depth, head=broker.head)

    assert republish() == 0, "every message still waits, oldest first"
    # The oldest message leaves the list and no worker claims its job: a failover
    # lost it, or the worker that fetched it died.
    with redis.Redis.from_url(settings.redis_url) as redis_client:
        redis_client.rpop(step_list(name, 9))  # priority 0 is Redis step 9
    assert broker.head(name, 0) == Head(uuid.UUID(second["id"]))
    assert _depth(app, queue) == 2, "the queue is busy: the empty-queue rule cannot see it"
    assert republish() == 1
    assert stored_job(settings.database_url, first["id"]).published_at > utcnow() - timedelta(
        seconds=10
    )
    assert _depth(app, queue) == 3
    assert republish() == 0, "published again just now"
    # What was published again runs once; the surviving messages run their own jobs.
    for job in (first, second, third):
        assert execute(job["id"], 0, "w", settings.database_url) == "succeeded"


def test_a_held_or_recent_job_is_not_taken_for_overtaken(
    runtime: Runtime, client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    held, _recent = (_submit(client, owner, queue, payload=[n]) for n in range(2))
    with redis.Redis.from_url(settings.redis_url) as redis_client:
        redis_client.delete(step_list(f"tf.{queue['id']}", 9))  # no message waits at all
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(held["id"]))
            .values(published_at=utcnow() - timedelta(minutes=2), held_since=utcnow())
        )
    broker = runtime.broker
    assert republish_lost_messages(settings.database_url, broker.depth, head=broker.head) == 0, (
        "a held message is the held-message rescue's; a recent one may still be in flight"
    )


def test_the_broker_probe_reads_the_oldest_message_of_a_priority(
    runtime: Runtime, client: FlaskClient, owner: Account, redis_server: Any
) -> None:
    queue = _queue(client, owner)
    name = f"tf.{queue['id']}"
    assert runtime.broker.head(name, 0) == Head(None)
    urgent = _submit(client, owner, queue, priority=9)
    _submit(client, owner, queue, priority=9)
    assert runtime.broker.head(name, 9) == Head(uuid.UUID(urgent["id"]))
    assert runtime.broker.head(name, 0) == Head(None)
    with redis.Redis.from_url(redis_server.url) as redis_client:
        redis_client.lpush(step_list(name, 9), "not a kombu message")
        assert runtime.broker.head(name, 0) is None, "unreadable: unknown"
        redis_client.delete(step_list(name, 9))
        redis_client.lpush(step_list(name, 9), b'{"headers": {"id": "relay-task"}}')
        assert runtime.broker.head(name, 0) is None, "not a job's message: unknown"
    assert BrokerProbe.from_url("redis://127.0.0.1:1/0").head(name, 0) is None


def test_a_failed_attempt_ends_the_celery_task_in_retry_then_failure(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    client: FlaskClient,
    owner: Account,
    settings: Settings,
) -> None:
    monkeypatch.setattr(worker, "_runtime", runtime)
    queue = _queue(client, owner, retry_backoff_seconds=0)
    job = _submit(
        client, owner, queue, job_type="fail", payload={"message": "boom"}, max_attempts=2
    )
    with pytest.raises(Retry) as retried:
        run_job_task(job["id"], 0)
    assert isinstance(retried.value.exc, JobFailed) and str(retried.value.exc) == "boom"
    with pytest.raises(JobFailed, match=r"^boom$") as failed:
        run_job_task(job["id"], 1)
    assert any(frame.name == "fail" for frame in traceback.extract_tb(failed.value.__traceback__))
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.FAILED
    echo = _submit(client, owner, queue)
    assert run_job_task(echo["id"], 0) == "succeeded"
    assert run_job_task(echo["id"], 0) == "dropped"


def test_a_revoked_task_cancels_its_waiting_job_and_nothing_else(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = _queue(client, owner)
    waiting, running, done = (_submit(client, owner, queue) for _ in range(3))
    url = settings.database_url

    def revoke(job: dict, attempt: int, *, terminated: bool = False) -> bool:
        return execution.cancel_revoked(url, uuid.UUID(job["id"]), attempt, terminated=terminated)

    assert not revoke(waiting, 1), "a revoke of another attempt changes nothing"
    assert revoke(waiting, 0) and not revoke(waiting, 0)
    assert stored_job(settings.database_url, waiting["id"]).status is JobStatus.CANCELLED
    assert execute(done["id"], 0, "w", url) == "succeeded"
    assert not revoke(done, 0, terminated=True)
    assert stored_job(settings.database_url, done["id"]).status is JobStatus.SUCCEEDED
    assert claim(url, uuid.UUID(running["id"]), 0, "w") is not None
    assert not revoke(running, 0), "a plain revoke lets a running task finish"
    assert revoke(running, 0, terminated=True)
    assert stored_job(settings.database_url, running["id"]).status is JobStatus.CANCELLED
    assert [a.status for a in _attempts(settings, running["id"])] == [AttemptStatus.CANCELLED]


def test_cancel_of_a_running_job_is_a_compare_and_set(
    client: FlaskClient, owner: Account, settings: Settings, app: Flask
) -> None:
    queue = _queue(client, owner)
    job = _submit(client, owner, queue)
    claimed = claim(settings.database_url, uuid.UUID(job["id"]), 0, "w")
    assert claimed is not None
    statuses = run_together(
        *(
            lambda: (
                app.test_client()
                .post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers)
                .status_code
            )
            for _ in range(5)
        )
    )
    assert sorted(statuses) == [204, 409, 409, 409, 409]
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.CANCELLED
    attempts = _attempts(settings, job["id"])
    assert [(a.status, a.error) for a in attempts] == [
        (AttemptStatus.CANCELLED, execution.CANCELLED_ERROR)
    ]
    assert not record_success(settings.database_url, uuid.UUID(job["id"]), claimed, "late")
    assert stored_job(settings.database_url, job["id"]).status is JobStatus.CANCELLED
