"""Queue policies on a real Redis: token buckets, semaphores with SQL-backed leases, explain."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import NotFound, PermissionDenied, ValidationFailed
from app.models import AuditEvent, Job, Queue, Role, utcnow
from app.services import explain, policies
from app.services.actors import Actor
from app.services.outbox import Dispatch
from tests.support import factories
from tests.support.execution import claim
from tests.support.factories import RecordingPublisher


def _queue(session: Session, actor: Actor, policy: dict[str, Any]) -> Queue:
    queue = factories.queue(session, actor)
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy=policy)
    return queue


def _jobs(session: Session, actor: Actor, queue: Queue, n: int, **fields: Any) -> list[Job]:
    jobs = [factories.job(session, actor, queue, **fields) for _ in range(n)]
    session.commit()
    return jobs


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"max_dispatches_per_second": 0}, "policy.max_dispatches_per_second"),
        ({"max_dispatches_per_second": True}, "policy.max_dispatches_per_second"),
        ({"max_concurrent_jobs": 1.5}, "policy.max_concurrent_jobs"),
        ({"max_concurrent_jobs": 0}, "policy.max_concurrent_jobs"),
        ({"burst": 3}, "policy.burst"),
        ({"speed": 3}, "policy.speed"),
        (
            {"job_types": [{"job_type": "x", "max_concurrent_jobs": -1}]},
            "policy.job_types[0].max_concurrent_jobs",
        ),
        ({"job_types": [{"job_type": "x", "job_types": []}]}, "policy.job_types[0].job_types"),
        ({"job_types": [{"max_concurrent_jobs": 1}]}, "policy.job_types[0].job_type"),
        ({"job_types": [{"job_type": "a b"}]}, "policy.job_types[0].job_type"),
        ({"job_types": [{"job_type": "x"}, {"job_type": "x"}]}, "policy.job_types[1].job_type"),
        ({"job_types": {}}, "policy.job_types"),
    ],
)
def test_bad_policies_are_refused_by_field(
    session: Session, actor: Actor, policy: dict, field: str
) -> None:
    queue = factories.queue(session, actor)
    with pytest.raises(ValidationFailed) as refused:
        policies.set_policy(session, actor=actor, queue_id=queue.id, policy=policy)
    assert field in refused.value.errors


def test_policy_changes_are_admin_only_tenant_scoped_and_audited(
    session: Session, actor: Actor, actor_as: Callable[[Role], Actor]
) -> None:
    queue = factories.queue(session, actor)
    policy = {
        "max_concurrent_jobs": 2,
        "job_types": [{"job_type": "sleep", "max_dispatches_per_second": 1}],
    }
    with pytest.raises(PermissionDenied):
        policies.set_policy(session, actor=actor_as(Role.MEMBER), queue_id=queue.id, policy=policy)
    stranger = factories.actor_of(factories.register(session, "Other").user)
    with pytest.raises(NotFound):
        policies.set_policy(session, actor=stranger, queue_id=queue.id, policy=policy)
    assert policies.set_policy(session, actor=actor, queue_id=queue.id, policy=policy) == policy
    assert policies.get_policy(session, actor=actor_as(Role.VIEWER), queue_id=queue.id) == policy
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy={})
    assert policies.get_policy(session, actor=actor, queue_id=queue.id) == {}
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.created_at)).all()
    assert [(e.action, e.details["after"]) for e in events] == [
        ("queue.policy_change", policy),
        ("queue.policy_change", {}),
    ]


def test_a_full_semaphore_holds_back_until_the_running_attempt_ends(
    session: Session, actor: Actor, database_url: str, store: Any, published: RecordingPublisher
) -> None:
    queue = _queue(session, actor, {"max_concurrent_jobs": 1})
    first, second = _jobs(session, actor, queue, 2)
    assert policies.hold_back(database_url, first.id, 0) is False
    assert claim(database_url, first.id, 0, "w@h") is not None
    before = len(published.of_type(Dispatch))
    assert policies.hold_back(database_url, second.id, 0) is True
    [again] = published.of_type(Dispatch)[before:]
    assert again.job_id == second.id and again.eta is not None
    assert 0.5 < (again.eta - utcnow()).total_seconds() <= 1
    session.refresh(second)
    assert second.status.value == "pending"
    # The first attempt ends: its slot is taken back at the next contention.
    session.execute(update(Job).where(Job.id == first.id).values(status="succeeded"))
    session.commit()
    assert policies.hold_back(database_url, second.id, 0) is False


def test_an_admitted_attempt_keeps_its_slot_until_it_is_claimed(
    session: Session,
    actor: Actor,
    database_url: str,
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = _queue(session, actor, {"max_concurrent_jobs": 1})
    first, second = _jobs(session, actor, queue, 2)
    assert policies.hold_back(database_url, first.id, 0) is False
    # Admitted, not claimed yet: the slot is its own, not a stale one to take.
    assert policies.hold_back(database_url, second.id, 0) is True
    # A claim that never comes (it failed) frees the slot after the grace.
    monkeypatch.setattr(policies, "CLAIM_GRACE", timedelta(0))
    assert policies.hold_back(database_url, second.id, 0) is False


def test_a_dead_workers_slot_comes_back_when_its_lease_runs_out(
    session: Session, actor: Actor, database_url: str, store: Any
) -> None:
    queue = _queue(session, actor, {"max_concurrent_jobs": 1})
    first, second = _jobs(session, actor, queue, 2)
    assert policies.hold_back(database_url, first.id, 0) is False
    assert claim(database_url, first.id, 0, "w@h") is not None
    assert policies.hold_back(database_url, second.id, 0) is True
    session.execute(
        update(Job)
        .where(Job.id == first.id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert policies.hold_back(database_url, second.id, 0) is False


def test_a_token_bucket_lets_a_burst_through_then_spaces_the_rest(
    session: Session, actor: Actor, database_url: str, store: Any, published: RecordingPublisher
) -> None:
    queue = _queue(session, actor, {"max_dispatches_per_second": 2, "burst": 2})
    jobs = _jobs(session, actor, queue, 3)
    before = len(published.of_type(Dispatch))
    assert [policies.hold_back(database_url, job.id, 0) for job in jobs] == [False, False, True]
    [again] = published.of_type(Dispatch)[before:]
    assert again.eta is not None and 0 < (again.eta - utcnow()).total_seconds() <= 0.5
    found = explain.explain_job(session, actor=actor, job_id=jobs[2].id, lease_seconds=30)
    limited = next(b for b in found.blockers if b.code == "rate_limited")
    assert (limited.details["max_per_second"], limited.details["burst"]) == (2, 2)
    assert 0 < limited.details["in_seconds"] <= 0.5


def test_a_job_type_limit_holds_only_that_type_and_a_change_applies_at_once(
    session: Session, actor: Actor, database_url: str, store: Any
) -> None:
    queue = _queue(session, actor, {"job_types": [{"job_type": "sleep", "max_concurrent_jobs": 1}]})
    sleepers = _jobs(session, actor, queue, 2, job_type="sleep")
    echoes = _jobs(session, actor, queue, 3)
    assert policies.hold_back(database_url, sleepers[0].id, 0) is False
    assert claim(database_url, sleepers[0].id, 0, "w@h") is not None
    assert policies.hold_back(database_url, sleepers[1].id, 0) is True
    assert [policies.hold_back(database_url, job.id, 0) for job in echoes] == [False] * 3
    found = explain.explain_job(session, actor=actor, job_id=sleepers[1].id, lease_seconds=30)
    capped = next(b for b in found.blockers if b.code == "concurrency_cap")
    assert (capped.details["running"], capped.details["max"]) == (1, 1)
    assert capped.message.startswith("The job type 'sleep' runs 1 of at most 1 jobs at once.")
    policies.set_policy(
        session,
        actor=actor,
        queue_id=queue.id,
        policy={"job_types": [{"job_type": "sleep", "max_concurrent_jobs": 2}]},
    )
    session.commit()
    assert policies.hold_back(database_url, sleepers[1].id, 0) is False


def test_without_a_policy_or_a_store_nothing_is_held(
    session: Session, actor: Actor, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = factories.queue(session, actor)
    [job] = _jobs(session, actor, queue, 1)
    monkeypatch.setattr(policies, "_store", None)
    assert policies.hold_back(database_url, job.id, 0) is False


def test_a_message_the_claim_would_drop_takes_no_slot(
    session: Session, actor: Actor, database_url: str, store: Any
) -> None:
    queue = _queue(session, actor, {"max_concurrent_jobs": 1})
    later = factories.job(session, actor, queue, scheduled_for=utcnow() + timedelta(hours=1))
    [now] = _jobs(session, actor, queue, 1)
    assert policies.hold_back(database_url, later.id, 0) is False, "too early: the claim drops it"
    assert policies.hold_back(database_url, now.id, 1) is False, "a stale attempt"
    assert policies.hold_back(database_url, now.id, 0) is False, "the slot is still free"
