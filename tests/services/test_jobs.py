"""Jobs through the service layer: submit, idempotency, cancel, retry, stats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, ValidationFailed
from app.models import JobStatus, utcnow
from app.services import jobs
from app.services.actors import Actor
from app.services.outbox import Dispatch, Revoke, Submitted
from tests.support import factories
from tests.support.factories import RecordingPublisher


def test_submit_stages_its_message_and_count_for_after_commit(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor, settings={"timeout_seconds": 60})
    job = jobs.submit_job(session, actor=actor, queue_name="work", job_type="echo", payload=[1])
    assert (job.status, job.max_attempts, job.queue_id) == (JobStatus.PENDING, 3, queue.id)
    assert published.staged == [], "nothing leaves before the commit"
    session.commit()
    [dispatch] = published.of_type(Dispatch)
    assert (dispatch.job_id, dispatch.timeout_seconds, dispatch.job_type) == (job.id, 60, "echo")
    assert published.of_type(Submitted) == [Submitted(queue.id)]


def test_a_rolled_back_submit_sends_nothing(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    session.commit()
    published.staged.clear()
    factories.job(session, actor, queue)
    session.rollback()
    assert published.staged == []


def test_a_future_job_is_scheduled(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    when = utcnow() + timedelta(hours=1)
    job = factories.job(session, actor, queue, scheduled_for=when)
    assert (job.status, job.available_at) == (JobStatus.SCHEDULED, when)


def test_the_same_idempotency_key_returns_the_same_job(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    first = factories.job(session, actor, queue, idempotency_key="order-1")
    again = factories.job(session, actor, queue, idempotency_key="order-1")
    assert again.id == first.id


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"job_type": "has space"}, "job_type"),
        ({"priority": 10}, "priority"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"idempotency_key": " padded "}, "idempotency_key"),
    ],
)
def test_submit_validates_its_input(
    session: Session, actor: Actor, fields: dict, field: str
) -> None:
    queue = factories.queue(session, actor)
    with pytest.raises(ValidationFailed) as refused:
        jobs.submit_job(session, actor=actor, queue_id=queue.id, **{"job_type": "echo", **fields})
    assert field in refused.value.errors


def test_cancel_is_for_waiting_jobs_only_and_revokes_the_message(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    assert jobs.cancel_job(session, actor=actor, job_id=job.id).status is JobStatus.CANCELLED
    session.commit()
    assert published.of_type(Revoke) == [Revoke(f"{job.id}:0")]
    with pytest.raises(Conflict):
        jobs.cancel_job(session, actor=actor, job_id=job.id)


def test_retry_is_for_failed_jobs_only(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    with pytest.raises(Conflict):
        jobs.retry_job(session, actor=actor, job_id=job.id)


def test_another_organizations_job_is_not_found(session: Session, actor: Actor) -> None:
    job = factories.job(session, actor, factories.queue(session, actor))
    intruder = factories.actor_of(factories.register(session, "Intruder").user)
    with pytest.raises(NotFound):
        jobs.get_job(session, actor=intruder, job_id=job.id)


def test_a_batch_names_the_job_that_failed(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    specs = [{"queue_id": queue.id, "job_type": "echo"}, {"queue_id": queue.id, "job_type": "?"}]
    with pytest.raises(ValidationFailed) as refused:
        jobs.submit_jobs(session, actor=actor, jobs=specs)
    assert "jobs[1].job_type" in refused.value.errors


def test_stats_of_a_job_not_started(session: Session, actor: Actor) -> None:
    job = factories.job(session, actor, factories.queue(session, actor))
    stats = jobs.job_stats(session, actor=actor, job_id=job.id)
    assert (stats.attempts, stats.wait_seconds, stats.run_seconds) == ([], None, 0)


def test_a_cursor_walks_the_list_in_page_order_through_equal_times(
    session: Session, actor: Actor
) -> None:
    queue = factories.queue(session, actor)
    factories.job(session, actor, queue)
    # A batch's jobs share one created_at: the id breaks the tie.
    jobs.submit_jobs(session, actor=actor, jobs=[{"queue_id": queue.id, "job_type": "echo"}] * 7)
    factories.job(session, actor, queue)
    by_page = [job.id for job in jobs.list_jobs(session, actor=actor, page=1, limit=100).items]
    walked, after, pages = [], None, 0
    while True:
        page = jobs.list_jobs(session, actor=actor, page=1, limit=3, queue_id=queue.id, after=after)
        assert page.total == 9
        walked += [job.id for job in page.items]
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert walked == by_page
    assert pages == 3 + 1, "three full pages, then an empty one"


@pytest.mark.parametrize("after", ["nonsense", "", "a" * 300, "MjAyNi0xMi0wNCAxMjowMHx4"])
def test_a_cursor_that_no_list_returned_is_refused(
    session: Session, actor: Actor, after: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        jobs.list_jobs(session, actor=actor, page=1, limit=3, after=after)
    assert "after" in refused.value.errors


def test_a_cursor_and_a_page_number_do_not_combine(session: Session, actor: Actor) -> None:
    factories.job(session, actor, factories.queue(session, actor))
    after = jobs.list_jobs(session, actor=actor, page=1, limit=1).next_after
    assert after is not None
    with pytest.raises(ValidationFailed) as refused:
        jobs.list_jobs(session, actor=actor, page=2, limit=1, after=after)
    assert "page" in refused.value.errors
