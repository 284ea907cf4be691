"""Explain: each blocker of a waiting job with its numbers, and the timings of a finished one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Job, Queue, Role, utcnow
from app.services import explain, queues
from app.services.actors import Actor
from app.services.explain import Blocker, Explanation, Facts
from app.services.outbox import RELAY_GRACE
from tests.support import factories
from tests.support.execution import claim, execute

LEASE = 30.0


def _explain(session: Session, actor: Actor, job: Job, depth: int | None = None) -> Explanation:
    return explain.explain_job(
        session,
        actor=actor,
        job_id=job.id,
        lease_seconds=LEASE,
        broker_depth=None if depth is None else (lambda _queue: depth),
    )


def _codes(found: Explanation) -> list[str]:
    return [blocker.code for blocker in found.blockers]


def _live(session: Session, queue: Queue, job_types: list[str] | None = None) -> None:
    factories.runner(session, f"w-{queue.name}@h", queue.celery_queue, job_types)


def _published(session: Session, job: Job, **values: Any) -> None:
    session.execute(update(Job).where(Job.id == job.id).values(published_at=utcnow(), **values))
    session.refresh(job)


def test_a_paused_queue_comes_first(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    queues.pause_queue(session, actor=actor, queue_id=queue.id)
    found = _explain(session, actor, job)
    assert found.state == "waiting"
    assert _codes(found) == ["queue_paused", "no_live_worker"]
    assert found.summary == "Queue 'work' is paused; its jobs start when it is resumed."


def test_a_scheduled_job_says_when(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    _live(session, queue)
    at = utcnow() + timedelta(minutes=10)
    job = factories.job(session, actor, queue, scheduled_for=at)
    found = _explain(session, actor, job)
    assert _codes(found) == ["scheduled", "message_unpublished"]
    scheduled = found.blockers[0]
    assert scheduled.details["at"] == at.isoformat()
    assert 590 < scheduled.details["in_seconds"] <= 600
    unpublished = found.blockers[1]
    assert unpublished.details["by"] == "relay"
    assert "ETA horizon" in unpublished.message


def test_a_retry_waits_for_its_backoff(session: Session, actor: Actor, database_url: str) -> None:
    queue = factories.queue(session, actor, settings={"retry_backoff_seconds": 3600})
    _live(session, queue)
    job = factories.job(session, actor, queue, job_type="fail", max_attempts=3)
    session.commit()
    assert execute(str(job.id), 0, "w@h", database_url) == "retrying"
    session.refresh(job)
    found = _explain(session, actor, job)
    if job.available_at is not None and job.available_at > utcnow():
        [backoff, *_] = found.blockers
        assert backoff.code == "retry_backoff"
        assert (backoff.details["attempts"], backoff.details["last_error"]) == (
            1,
            "fail job failed as requested",
        )
    else:  # full jitter drew a backoff of (almost) nothing
        assert "retry_backoff" not in _codes(found)


def test_no_live_worker_then_none_with_the_job_type(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue, job_type="resize")
    _published(session, job)
    assert _codes(_explain(session, actor, job)) == ["no_live_worker"]
    _live(session, queue, ["thumbnail", "transcode"])
    found = _explain(session, actor, job)
    assert _codes(found) == ["no_worker_for_job_type"]
    assert found.blockers[0].details == {
        "job_type": "resize",
        "live_workers": 1,
        "advertised": ["thumbnail", "transcode"],
    }


def test_jobs_of_equal_or_higher_priority_ahead(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    _live(session, queue)
    factories.job(session, actor, queue, priority=9)
    factories.job(session, actor, queue, priority=5)
    factories.job(session, actor, queue, priority=1)
    factories.job(session, actor, queue, priority=5, scheduled_for=utcnow() + timedelta(hours=1))
    job = factories.job(session, actor, queue, priority=5)
    _published(session, job)
    found = _explain(session, actor, job, depth=5)
    assert _codes(found) == ["jobs_ahead"]
    assert found.blockers[0].details == {"ahead": 2, "running": 0, "live_workers": 1}
    assert found.summary.startswith("2 job(s) of equal or higher priority are ahead")


def test_a_message_held_by_a_worker_and_a_lost_one(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    _live(session, queue)
    job = factories.job(session, actor, queue)
    _published(session, job, held_since=utcnow())
    held = _explain(session, actor, job, depth=0).blockers
    assert [b.code for b in held] == ["message_held"]
    assert held[0].details["by"] == "sweep"
    _published(session, job, held_since=None)
    assert _codes(_explain(session, actor, job, depth=1)) == []
    lost = _explain(session, actor, job, depth=0)
    assert _codes(lost) == ["message_lost"]
    assert lost.blockers[0].details["by"] == "republish"


def test_a_job_just_submitted_is_unpublished_only_when_its_queue_is_empty(
    session: Session, actor: Actor
) -> None:
    queue = factories.queue(session, actor)
    _live(session, queue)
    job = factories.job(session, actor, queue)  # sent; its published_at stamp is pending
    assert _codes(_explain(session, actor, job, depth=1)) == []
    assert _codes(_explain(session, actor, job, depth=0)) == ["message_unpublished"]
    older = utcnow() - RELAY_GRACE - timedelta(seconds=1)
    session.execute(update(Job).where(Job.id == job.id).values(updated_at=older))
    session.refresh(job)
    assert _codes(_explain(session, actor, job, depth=1)) == ["message_unpublished"]


def test_nothing_blocks_a_job_about_to_be_claimed(session: Session, actor: Actor) -> None:
    queue = factories.queue(session, actor)
    _live(session, queue)
    job = factories.job(session, actor, queue)
    _published(session, job)
    found = _explain(session, actor, job, depth=1)
    assert (found.blockers, found.summary) == (
        [],
        "Nothing blocks it: a live worker should claim it momentarily.",
    )


def test_a_running_and_a_finished_job(session: Session, actor: Actor, database_url: str) -> None:
    queue = factories.queue(session, actor, settings={"retry_backoff_seconds": 0})
    running = factories.job(session, actor, queue)
    flaky = factories.job(session, actor, queue, job_type="flaky", payload={"failures": 1})
    session.commit()
    assert claim(database_url, running.id, 0, "w@h") is not None
    assert execute(str(flaky.id), 0, "w@h", database_url) == "retrying"
    session.execute(update(Job).where(Job.id == flaky.id).values(available_at=None))
    session.commit()
    assert execute(str(flaky.id), 1, "w@h", database_url) == "succeeded"
    session.refresh(running)
    session.refresh(flaky)
    found = _explain(session, actor, running)
    assert (found.state, found.blockers) == ("running", [])
    assert found.summary.startswith("Running attempt 1 of 3 on w@h since ")
    done = _explain(session, actor, flaky)
    assert done.state == "finished"
    assert (done.timings.attempts, done.timings.retries) == (2, 1)
    assert done.timings.waited_seconds is not None and done.timings.waited_seconds >= 0
    assert done.timings.total_seconds is not None
    assert done.timings.total_seconds >= done.timings.ran_seconds
    assert done.summary.startswith("Succeeded after 2 attempt(s)")


def test_a_registered_check_adds_its_blocker(
    session: Session, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explain, "CHECKS", list(explain.CHECKS))

    def capped(facts: Facts) -> Blocker | None:
        return Blocker("concurrency_cap", "2 running of 2", {"running": 2, "max": 2})

    explain.register_check(capped)
    queue = factories.queue(session, actor)
    _live(session, queue)
    job = factories.job(session, actor, queue)
    _published(session, job)
    assert _codes(_explain(session, actor, job, depth=1)) == ["concurrency_cap"]


def test_explain_is_tenant_scoped_and_readable_by_viewers(
    session: Session, actor: Actor, actor_as: Any
) -> None:
    job = factories.job(session, actor, factories.queue(session, actor))
    assert _explain(session, actor_as(Role.VIEWER), job).state == "waiting"
    stranger = factories.actor_of(factories.register(session, "Other").user)
    with pytest.raises(NotFound):
        _explain(session, stranger, job)
