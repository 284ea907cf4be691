"""Purge, dead letters, staged redrive and bulk actions through the service layer."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.db import get_engine, session_scope
from app.errors import NotFound, PermissionDenied, ValidationFailed
from app.models import AuditEvent, Job, JobStatus, Queue, Role, utcnow
from app.services import queue_control
from app.services.actors import Actor
from app.services.auth import actor_for_user_id
from app.services.outbox import Dispatch
from app.services.queue_control import JobFilter
from tests.support import factories
from tests.support.execution import claim, execute
from tests.support.factories import RecordingPublisher
from tests.support.races import run_together


def _failed(
    session: Session, actor: Actor, queue: Queue, database_url: str, n: int, **fields: Any
) -> list[Job]:
    """``n`` jobs of ``queue`` that failed their only attempt (the ``fail`` handler)."""
    jobs = [
        factories.job(session, actor, queue, job_type="fail", max_attempts=1, **fields)
        for _ in range(n)
    ]
    session.commit()
    for job in jobs:
        assert execute(str(job.id), 0, "w@h", database_url) == "failed"
    for job in jobs:
        session.refresh(job)
    return jobs


def _audit(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.created_at)
        )
    )


# --- purge ---------------------------------------------------------------------------


def test_purge_cancels_waiting_jobs_only_and_is_idempotent(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    pending = factories.job(session, actor, queue)
    scheduled = factories.job(session, actor, queue, scheduled_for=utcnow() + timedelta(hours=1))
    running = factories.job(session, actor, queue)
    done = factories.job(session, actor, queue)
    other_queue_job = factories.job(session, actor, factories.queue(session, actor, "other"))
    session.commit()
    assert claim(database_url, running.id, 0, "w@h") is not None
    assert execute(str(done.id), 0, "w@h", database_url) == "succeeded"

    assert (
        queue_control.purge_queue(session, actor=actor, queue_id=queue.id, confirm_name="work") == 2
    )
    session.commit()
    for job in (pending, scheduled, running, done, other_queue_job):
        session.refresh(job)
    assert (pending.status, scheduled.status) == (JobStatus.CANCELLED, JobStatus.CANCELLED)
    assert running.status is JobStatus.PROCESSING
    assert done.status is JobStatus.SUCCEEDED
    assert other_queue_job.status is JobStatus.PENDING

    assert (
        queue_control.purge_queue(session, actor=actor, queue_id=queue.id, confirm_name="work") == 0
    )
    events = _audit(session, "queue.purge")
    assert [(e.count, e.target_id, e.user_id) for e in events] == [
        (2, queue.id, actor.user_id),
        (0, queue.id, actor.user_id),
    ]


def test_a_purged_jobs_message_is_dropped_by_the_claim(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    session.commit()
    [message] = published.of_type(Dispatch)
    queue_control.purge_queue(session, actor=actor, queue_id=queue.id, confirm_name="work")
    session.commit()
    assert execute(str(message.job_id), message.attempt, "w@h", database_url) == "dropped"
    session.refresh(job)
    assert (job.status, job.attempt_count, job.started_at) == (JobStatus.CANCELLED, 0, None)


def test_purge_needs_the_queue_name_an_admin_and_the_same_organization(
    session: Session, actor: Actor, actor_as: Callable[[Role], Actor]
) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    with pytest.raises(ValidationFailed) as wrong:
        queue_control.purge_queue(session, actor=actor, queue_id=queue.id, confirm_name="Work")
    assert "confirm_name" in wrong.value.errors
    for role in (Role.MEMBER, Role.VIEWER):
        with pytest.raises(PermissionDenied):
            queue_control.purge_queue(
                session, actor=actor_as(role), queue_id=queue.id, confirm_name="work"
            )
    stranger = factories.actor_of(factories.register(session, "Other").user)
    with pytest.raises(NotFound):
        queue_control.purge_queue(session, actor=stranger, queue_id=queue.id, confirm_name="work")
    session.refresh(job)
    assert job.status is JobStatus.PENDING
    assert _audit(session, "queue.purge") == []


def test_pause_and_resume_are_audited(session: Session, actor: Actor) -> None:
    from app.services import queues

    queue = factories.queue(session, actor)
    queues.pause_queue(session, actor=actor, queue_id=queue.id)
    queues.pause_queue(session, actor=actor, queue_id=queue.id)
    queues.resume_queue(session, actor=actor, queue_id=queue.id)
    assert [(e.action, e.details["changed"]) for e in session.scalars(select(AuditEvent))] == [
        ("queue.pause", True),
        ("queue.pause", False),
        ("queue.resume", True),
    ]


# --- dead letters ----------------------------------------------------------------------


def test_dead_letters_list_failed_jobs_with_attempts_and_filters(
    session: Session, actor: Actor, database_url: str, actor_as: Callable[[Role], Actor]
) -> None:
    queue = factories.queue(session, actor)
    [failed] = _failed(session, actor, queue, database_url, 1, payload={"message": "disk full"})
    factories.job(session, actor, queue)
    session.commit()
    page = queue_control.list_dead_letters(
        session, actor=actor_as(Role.VIEWER), queue_id=queue.id, page=1, limit=10
    )
    assert page.total == 1
    [letter] = page.items
    assert letter.job.id == failed.id
    assert letter.job.error == "disk full"
    assert [(a.number, a.error) for a in letter.attempts] == [(1, "disk full")]

    def total(**filters: Any) -> int:
        return queue_control.list_dead_letters(
            session,
            actor=actor,
            queue_id=queue.id,
            page=1,
            limit=10,
            job_filter=JobFilter(**filters),
        ).total

    assert total(error="DISK") == 1
    assert total(error="100%_") == 0
    assert total(job_type="echo") == 0
    assert total(since=utcnow()) == 0
    assert total(until=utcnow()) == 1
    assert total(since=utcnow(), until=utcnow() - timedelta(seconds=1)) == 0, "an empty range"


def test_a_dry_run_redrive_lists_and_changes_nothing(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    failed = _failed(session, actor, queue, database_url, 3)
    result = queue_control.redrive_dead_letters(
        session, actor=actor, queue_id=queue.id, dry_run=True, max_per_second=2
    )
    assert result.dry_run and result.redrive_id is None and result.count == 3
    assert [original.id for original, _ in result.planned] == [job.id for job in failed]
    slots = [slot for _, slot in result.planned]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    assert gaps == pytest.approx([0.5, 0.5])
    assert session.scalar(select(Job).where(Job.redriven_from.is_not(None))) is None
    assert _audit(session, "dead_letters.redrive") == []


def test_a_redrive_makes_new_jobs_with_lineage_at_the_rate_once(
    session: Session, actor: Actor, database_url: str, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    failed = _failed(session, actor, queue, database_url, 3)
    result = queue_control.redrive_dead_letters(
        session, actor=actor, queue_id=queue.id, dry_run=False, max_per_second=1
    )
    session.commit()
    assert result.count == 3 and result.redrive_id is not None
    new = {job.redriven_from: job for job in result.created}
    assert set(new) == {job.id for job in failed}
    first, second, third = (new[job.id] for job in failed)
    assert first.status is JobStatus.PENDING and first.available_at is None
    assert (second.status, third.status) == (JobStatus.SCHEDULED, JobStatus.SCHEDULED)
    assert (third.available_at - second.available_at).total_seconds() == pytest.approx(1)
    assert {job.redrive_id for job in result.created} == {result.redrive_id}
    assert {d.job_id for d in published.of_type(Dispatch)} >= {job.id for job in result.created}
    [event] = _audit(session, "dead_letters.redrive")
    assert (event.id, event.count, event.details["max_per_second"]) == (result.redrive_id, 3, 1)
    # Redriven dead letters leave the set; a second redrive finds nothing.
    again = queue_control.redrive_dead_letters(
        session, actor=actor, queue_id=queue.id, dry_run=False
    )
    assert again.count == 0
    assert (
        queue_control.list_dead_letters(
            session, actor=actor, queue_id=queue.id, page=1, limit=10
        ).total
        == 0
    )


def test_concurrent_redrives_redrive_each_dead_letter_once(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    failed = _failed(session, actor, queue, database_url, 4)
    assert actor.user_id is not None

    def redrive() -> int:
        with session_scope(database_url) as own:
            return queue_control.redrive_dead_letters(
                own,
                actor=actor_for_user_id(own, str(actor.user_id)),
                queue_id=queue.id,
                dry_run=False,
            ).count

    with _first_statements_meet(database_url, "INSERT INTO jobs", 2):
        counts = run_together(redrive, redrive)
    assert sum(counts) == 4
    made = session.scalars(select(Job.redriven_from).where(Job.redriven_from.is_not(None))).all()
    assert sorted(made) == sorted(job.id for job in failed)


def test_the_watch_halts_a_redrive_whose_jobs_fail_again(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor, settings={"max_attempts": 1})
    _failed(session, actor, queue, database_url, 5)
    result = queue_control.redrive_dead_letters(
        session,
        actor=actor,
        queue_id=queue.id,
        dry_run=False,
        max_per_second=0.01,
        stop_after_failures=2,
    )
    session.commit()
    first, second, *rest = result.created
    assert execute(str(first.id), 0, "w@h", database_url) == "failed"
    assert queue_control.halt_failing_redrives(session) == 0, "one failure is below the bar"
    # The second is not due yet: run it as if its time had come.
    session.execute(
        Job.__table__.update().where(Job.id == second.id).values(available_at=None)  # type: ignore[attr-defined]
    )
    session.commit()
    assert execute(str(second.id), 0, "w@h", database_url) == "failed"
    assert queue_control.halt_failing_redrives(session) == 3
    session.commit()
    for job in rest:
        session.refresh(job)
        assert job.status is JobStatus.CANCELLED
        assert job.error == "Redrive stopped: 2 of its jobs failed again"
    [halted] = _audit(session, "dead_letters.redrive_halted")
    assert (halted.count, halted.user_id, halted.details["redrive_id"]) == (
        3,
        None,
        str(result.redrive_id),
    )
    assert queue_control.halt_failing_redrives(session) == 0


def test_redrive_arguments_are_checked(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    for bad in ({"max_per_second": 0}, {"max_per_second": 10_000}, {"stop_after_failures": 0}):
        with pytest.raises(ValidationFailed):
            queue_control.redrive_dead_letters(session, actor=actor, queue_id=queue.id, **bad)


# --- bulk actions ----------------------------------------------------------------------


@contextmanager
def _first_statements_meet(database_url: str, prefix: str, parties: int) -> Iterator[None]:
    """Hold each thread's first statement starting with ``prefix`` until ``parties`` arrive.

    Every caller has then read its candidates before any of them writes, so the
    compare-and-set of each row decides who wins.
    """
    barrier = threading.Barrier(parties, timeout=10)
    seen = threading.local()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(prefix) and not getattr(seen, "done", False):
            seen.done = True
            with suppress(threading.BrokenBarrierError):
                barrier.wait()

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", hold)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", hold)


def test_concurrent_bulk_retries_retry_each_job_once(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    failed = _failed(session, actor, queue, database_url, 5)
    assert actor.user_id is not None

    def bulk_retry() -> queue_control.BulkResult:
        with session_scope(database_url) as own:
            return queue_control.bulk_retry(
                own, actor=actor_for_user_id(own, str(actor.user_id)), queue_id=queue.id
            )

    with _first_statements_meet(database_url, "UPDATE jobs", 2):
        results = run_together(bulk_retry, bulk_retry)
    assert [r.matched for r in results] == [5, 5], "both read every job before either wrote"
    assert sum(r.changed for r in results) == 5
    for job in failed:
        session.refresh(job)
        assert (job.status, job.dispatch_generation, job.max_attempts) == (JobStatus.PENDING, 1, 2)
    assert sorted(e.count for e in _audit(session, "jobs.bulk_retry")) == sorted(
        r.changed for r in results
    )


def test_bulk_retry_filters_and_skips_a_job_that_moved_on(
    session: Session, actor: Actor, database_url: str
) -> None:
    queue = factories.queue(session, actor)
    disk = _failed(session, actor, queue, database_url, 2, payload={"message": "disk full"})
    _failed(session, actor, queue, database_url, 1, payload={"message": "timeout"})
    result = queue_control.bulk_retry(
        session, actor=actor, queue_id=queue.id, job_filter=JobFilter(error="disk")
    )
    assert (result.matched, result.changed) == (2, 2)
    session.commit()
    for job in disk:
        session.refresh(job)
        assert job.status is JobStatus.PENDING
    with pytest.raises(ValidationFailed):
        queue_control.bulk_retry(
            session, actor=actor, queue_id=queue.id, statuses=[JobStatus.SUCCEEDED]
        )


def test_bulk_cancel_by_type_and_time(
    session: Session, actor: Actor, actor_as: Callable[[Role], Actor]
) -> None:
    queue = factories.queue(session, actor)
    sleepers = [factories.job(session, actor, queue, job_type="sleep") for _ in range(2)]
    echo = factories.job(session, actor, queue)
    with pytest.raises(PermissionDenied):
        queue_control.bulk_cancel(session, actor=actor_as(Role.MEMBER), queue_id=queue.id)
    assert queue_control.bulk_cancel(
        session, actor=actor, queue_id=queue.id, job_filter=JobFilter(since=utcnow())
    ) == queue_control.BulkResult(0, 0)
    result = queue_control.bulk_cancel(
        session, actor=actor, queue_id=queue.id, job_filter=JobFilter(job_type="sleep")
    )
    assert (result.matched, result.changed) == (2, 2)
    for job in (*sleepers, echo):
        session.refresh(job)
    assert [job.status for job in sleepers] == [JobStatus.CANCELLED] * 2
    assert echo.status is JobStatus.PENDING
    with pytest.raises(NotFound):
        queue_control.bulk_cancel(session, actor=actor, queue_id=uuid.uuid4())


def test_a_queue_with_redriven_jobs_can_be_deleted(
    session: Session, actor: Actor, database_url: str
) -> None:
    from app.services import queues

    queue = factories.queue(session, actor)
    _failed(session, actor, queue, database_url, 2)
    result = queue_control.redrive_dead_letters(
        session, actor=actor, queue_id=queue.id, dry_run=False
    )
    queue_control.bulk_cancel(session, actor=actor, queue_id=queue.id)
    session.commit()
    assert len(result.created) == 2
    queues.delete_queue(session, actor=actor, queue_id=queue.id)
    session.commit()
    assert session.scalar(select(Job).where(Job.queue_id == queue.id)) is None
