"""Queues through the service layer: create, update, pause/resume, delete, stats."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from app.models import JobStatus, Role
from app.services import queues
from app.services.actors import Actor
from app.services.auth import Registration
from app.services.outbox import ConsumeQueue, Dispatch
from tests.support import factories
from tests.support.factories import RecordingPublisher


def test_a_new_queue_joins_the_default_project_and_is_announced_to_workers(
    session: Session, org: Registration, actor: Actor, published: RecordingPublisher
) -> None:
    queue = queues.create_queue(
        session, actor=actor, name="  emails  ", settings={"max_attempts": 5}
    )
    assert (queue.name, queue.project_id, queue.settings) == (
        "emails",
        org.project.id,
        {"max_attempts": 5},
    )
    session.commit()
    [announced] = published.of_type(ConsumeQueue)
    assert announced.celery_queue == f"tf.{queue.id}"


def test_queue_names_are_unique_in_an_organization(session: Session, actor: Actor) -> None:
    factories.queue(session, actor, "emails")
    with pytest.raises(Conflict):
        queues.create_queue(session, actor=actor, name="emails")


def test_a_viewer_reads_but_does_not_write(
    session: Session, actor: Actor, actor_as: Callable[[Role], Actor]
) -> None:
    queue = factories.queue(session, actor)
    viewer = actor_as(Role.VIEWER)
    assert queues.get_queue(session, actor=viewer, queue_id=queue.id) is queue
    with pytest.raises(PermissionDenied):
        queues.pause_queue(session, actor=viewer, queue_id=queue.id)


def test_another_organizations_queue_is_not_found(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    intruder = factories.actor_of(factories.register(session, "Intruder").user)
    with pytest.raises(NotFound):
        queues.get_queue(session, actor=intruder, queue_id=queue.id)


def test_resume_publishes_the_jobs_submitted_while_paused(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    queues.pause_queue(session, actor=actor, queue_id=queue.id)
    job = factories.job(session, actor, queue)
    session.commit()
    assert published.of_type(Dispatch) == []
    queues.resume_queue(session, actor=actor, queue_id=queue.id)
    session.commit()
    assert [item.job_id for item in published.of_type(Dispatch)] == [job.id]


def test_update_keeps_what_is_not_given(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor, description="kept")
    updated = queues.update_queue(session, actor=actor, queue_id=queue.id, priority=4)
    assert (updated.priority, updated.description) == (4, "kept")
    cleared = queues.update_queue(session, actor=actor, queue_id=queue.id, description=None)
    assert cleared.description is None
    with pytest.raises(ValidationFailed):
        queues.update_queue(session, actor=actor, queue_id=queue.id, priority=10)


def test_a_queue_with_active_jobs_is_not_deleted(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    factories.job(session, actor, queue)
    with pytest.raises(Conflict):
        queues.delete_queue(session, actor=actor, queue_id=queue.id)


def test_stats_count_jobs_per_state(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    for _ in range(2):
        factories.job(session, actor, queue)
    stats = queues.queue_stats(session, actor=actor, queue_id=queue.id, broker_depth=lambda _: 7)
    assert stats.counts[JobStatus.PENDING] == 2
    assert stats.broker_depth == 7
    assert stats.oldest_pending_age_seconds is not None
