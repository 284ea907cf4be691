"""A job attempt's state machine in SQL, called as the worker's executor calls it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import AttemptStatus, Job, JobAttempt, JobStatus
from app.services import execution
from app.services.actors import Actor
from app.services.execution import Outcome
from app.services.outbox import Dispatch
from app.services.queue_settings import QueueSettings
from tests.support import factories
from tests.support.factories import RecordingPublisher

LEASE = 30.0


def _claim(database_url: str, job_id: object, attempt: int = 0) -> execution.Claimed | None:
    return execution.claim(database_url, job_id, attempt, "w@h", lease_seconds=LEASE)  # type: ignore[arg-type]


def test_a_claim_moves_the_job_to_processing_once(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor, settings={"timeout_seconds": 5})
    job = factories.job(session, actor, queue, payload={"n": 1})
    session.commit()
    claimed = _claim(database_url, job.id)
    assert claimed is not None
    assert (claimed.job_type, claimed.payload, claimed.attempt) == ("echo", {"n": 1}, 1)
    assert claimed.queue_settings.timeout_seconds == 5
    assert _claim(database_url, job.id) is None, "the same message again changes nothing"
    session.refresh(job)
    assert (job.status, job.worker_name, job.attempt_count) == (JobStatus.PROCESSING, "w@h", 1)
    assert job.lease_expires_at is not None


def test_success_is_recorded_for_the_claimed_attempt_only(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor))
    session.commit()
    claimed = _claim(database_url, job.id)
    assert claimed is not None
    assert execution.record_success(database_url, job.id, claimed, {"ok": True}) is True
    assert execution.record_success(database_url, job.id, claimed, "again") is False
    session.refresh(job)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"ok": True})


def test_a_failure_retries_with_backoff_then_fails(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor, settings={"retry_backoff_seconds": 0})
    job = factories.job(session, actor, queue, max_attempts=2)
    session.commit()
    first = _claim(database_url, job.id)
    assert first is not None
    assert execution.record_failure(database_url, job.id, first, "boom", None) is JobStatus.PENDING
    assert [item.attempt for item in published.of_type(Dispatch)][-1] == 1, "retry staged"
    second = _claim(database_url, job.id, attempt=1)
    assert second is not None
    assert execution.record_failure(database_url, job.id, second, "boom", "tb") is JobStatus.FAILED
    attempts = session.scalars(
        select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.number)
    )
    assert [a.status for a in attempts] == [AttemptStatus.FAILED, AttemptStatus.FAILED]


def test_a_failure_may_name_its_own_delay_or_end_the_job(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(
        session, actor, settings={"retry_backoff_seconds": 0, "retry_backoff_max_seconds": 0}
    )
    job = factories.job(session, actor, queue, max_attempts=3)
    session.commit()
    first = _claim(database_url, job.id)
    assert first is not None
    delayed = execution.AfterFailure(delay_seconds=90)
    assert execution.record_failure(database_url, job.id, first, "later", None, delayed) is (
        JobStatus.PENDING
    )
    session.refresh(job)
    attempt = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job.id)).one()
    assert job.available_at is not None and attempt.finished_at is not None
    assert job.available_at - attempt.finished_at == timedelta(seconds=90), "not the queue's 0"
    assert published.of_type(Dispatch)[-1].eta == job.available_at
    session.execute(update(Job).where(Job.id == job.id).values(available_at=None))
    session.commit()
    second = _claim(database_url, job.id, attempt=1)
    assert second is not None
    outcome = execution.record_failure(database_url, job.id, second, "no", None, execution.NO_RETRY)
    assert outcome is JobStatus.FAILED, "final though a third attempt was allowed"
    session.refresh(job)
    assert (job.status, job.attempt_count, job.error) == (JobStatus.FAILED, 2, "no")
    assert len(published.of_type(Dispatch)) == 2, "nothing staged for a final failure"


def test_a_delay_of_its_own_still_stops_at_max_attempts(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor), max_attempts=1)
    session.commit()
    claimed = _claim(database_url, job.id)
    assert claimed is not None
    after = execution.AfterFailure(delay_seconds=5)
    assert execution.record_failure(database_url, job.id, claimed, "x", None, after) is (
        JobStatus.FAILED
    )


def test_backoff_is_bounded_by_the_queue_settings() -> None:
    settings = QueueSettings(retry_backoff_seconds=10, retry_backoff_max_seconds=15)
    assert all(0 <= execution.backoff_seconds(5, settings) <= 15 for _ in range(50))


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ("'succeeded'", Outcome.SUCCEEDED),
        ("'handed_on'", Outcome.HANDED_ON),
        ("None", None),
        (3, None),
    ],
)
def test_the_outcome_travels_in_the_task_result(result: object, outcome: Outcome | None) -> None:
    assert Outcome.from_event(result) is outcome


def test_results_must_be_json_and_timeouts_name_the_limit() -> None:
    execution.check_result({"fine": [1, 2.5, None]})
    with pytest.raises(TypeError, match="not JSON"):
        execution.check_result(object())
    assert execution.timeout_error(9) == "Timed out after 9 seconds"
    assert execution.timeout_error(2.5) == "Timed out after 2.5 seconds"


def test_a_message_before_its_time_is_sent_again_with_its_eta(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    from app.models import utcnow

    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue, scheduled_for=utcnow() + timedelta(seconds=30))
    session.commit()
    published.staged.clear()
    assert _claim(database_url, job.id) is None
    [again] = published.of_type(Dispatch)
    assert (again.job_id, again.eta) == (job.id, job.available_at)
