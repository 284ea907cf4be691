"""Job-type routing: a job goes, unclaimed, to a worker of its queue that has its handler."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import JobStatus
from app.services import routing
from app.services.actors import Actor
from app.services.execution import Outcome
from app.services.outbox import HandOff
from tests.support import factories
from tests.support.factories import RecordingPublisher


def test_a_job_without_a_handler_here_is_handed_to_a_worker_that_has_one(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    factories.runner(session, "able@h", queue.celery_queue, ["resize"])
    job = factories.job(session, actor, queue, job_type="resize")
    session.commit()
    assert routing.hand_on(database_url, job.id, 0, "resize", "w@h", 0) is Outcome.HANDED_ON
    [handed] = published.of_type(HandOff)
    assert (handed.hostname, handed.hops, handed.dispatch.eta) == ("able@h", 1, None)
    session.refresh(job)
    assert (job.status, job.attempt_count, job.held_since is not None) == (
        JobStatus.PENDING,
        0,
        True,
    )


def test_a_job_no_worker_can_run_fails_without_an_attempt(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor), job_type="resize")
    session.commit()
    assert routing.hand_on(database_url, job.id, 0, "resize", "w@h", 0) is Outcome.FAILED
    session.refresh(job)
    assert (job.status, job.error) == (JobStatus.FAILED, routing.unrunnable_error("resize"))
