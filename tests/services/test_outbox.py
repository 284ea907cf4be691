"""The outbox: what is published after commit, stamped, relayed and published again."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Job, utcnow
from app.services import outbox
from app.services.actors import Actor
from app.services.outbox import Dispatch
from app.services.queue_settings import QueueSettings
from tests.support import factories
from tests.support.factories import RecordingPublisher


def test_a_dispatch_carries_the_jobs_attempt_generation_and_timeout(
    session: Session, actor: Actor
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor), priority=7)
    item = Dispatch.for_job(job, QueueSettings(timeout_seconds=42))
    assert (item.attempt, item.generation, item.priority, item.timeout_seconds) == (0, 0, 7, 42)
    assert item.task_id == f"{job.id}:0"
    assert item.due_for_publish


def test_a_message_due_beyond_the_horizon_waits_in_sql(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue, scheduled_for=utcnow() + timedelta(hours=1))
    assert not Dispatch.for_job(job, QueueSettings()).due_for_publish


def test_mark_published_stamps_only_the_dispatch_generation_it_published(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor))
    session.commit()
    item = Dispatch.for_job(job, QueueSettings())
    session.execute(update(Job).where(Job.id == job.id).values(dispatch_generation=1))
    session.commit()
    outbox.mark_published(database_url, [item])
    session.refresh(job)
    assert job.published_at is None, "a stale stamp must not hide a reset"


def test_the_relay_publishes_committed_jobs_left_unpublished(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    outbox.set_publisher(None)  # the API died right after its commit
    job = factories.job(session, actor, queue)
    session.commit()
    outbox.set_publisher(published)
    assert outbox.relay_unpublished(database_url) == 0, "inside the grace period"
    assert outbox.relay_unpublished(database_url, grace=timedelta(0)) == 1
    assert [item.job_id for item in published.sent] == [job.id]
    session.refresh(job)
    assert job.published_at is not None
    assert outbox.relay_unpublished(database_url, grace=timedelta(0)) == 0


def test_republish_lost_looks_only_at_queues_the_broker_holds_nothing_for(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    session.commit()
    long_ago = utcnow() - timedelta(minutes=10)
    session.execute(update(Job).where(Job.id == job.id).values(published_at=long_ago))
    session.commit()
    assert outbox.republish_lost_messages(database_url, lambda _queue: 3) == 0
    assert outbox.republish_lost_messages(database_url, lambda _queue: 0) == 1
    assert [item.job_id for item in published.sent] == [job.id]


def test_nothing_is_relayed_without_a_publisher(
    session: Session, actor: Actor, database_url: str
) -> None:
    outbox.set_publisher(None)
    factories.job(session, actor, factories.queue(session, actor))
    session.commit()
    assert outbox.relay_unpublished(database_url, grace=timedelta(0)) == 0


def test_an_eta_message_marks_its_job_held_until_the_message_is_due(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    scheduled_for = utcnow() + timedelta(seconds=30)
    scheduled = factories.job(session, actor, queue, scheduled_for=scheduled_for)
    held_back = factories.job(session, actor, queue)
    # Its earlier message was held; this one goes to the shared queue.
    queued = factories.job(session, actor, queue)
    session.execute(update(Job).where(Job.id == queued.id).values(held_since=utcnow()))
    session.commit()
    due = utcnow() + timedelta(seconds=7)  # a policy sends the job again for later
    outbox.mark_published(
        database_url,
        [
            Dispatch.for_job(scheduled, QueueSettings()),
            replace(Dispatch.for_job(held_back, QueueSettings()), eta=due),
            Dispatch.for_job(queued, QueueSettings()),
        ],
    )
    for job in (scheduled, held_back, queued):
        session.refresh(job)
        assert job.published_at is not None
    assert scheduled.held_since == scheduled.available_at
    assert held_back.available_at is None
    assert held_back.held_since == due, "the sweep takes it over if its worker dies"
    assert queued.held_since is None, "a message in the shared queue is held by no worker"
