"""Leases: renewing them, and what happens to the attempts of workers that stopped."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import AttemptStatus, Job, JobAttempt, JobStatus, utcnow
from app.services import execution, leases
from app.services.actors import Actor
from tests.support import factories

LEASE = 30.0


def _running(session: Session, actor: Actor, database_url: str, **fields: object) -> Job:
    job = factories.job(session, actor, factories.queue(session, actor), **fields)
    session.commit()
    assert execution.claim(database_url, job.id, 0, "w@h", lease_seconds=LEASE) is not None
    return job


def test_renewing_pushes_the_lease_forward(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = _running(session, actor, database_url)
    session.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=utcnow()))
    session.commit()
    leases.renew_leases(database_url, [(job.id, 1)], lease_seconds=LEASE)
    session.refresh(job)
    assert job.lease_expires_at is not None
    assert job.lease_expires_at > utcnow() + timedelta(seconds=LEASE - 5)


def test_an_expired_lease_loses_the_attempt_and_retries_the_job(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = _running(session, actor, database_url, max_attempts=2)
    assert leases.sweep_expired_leases(database_url) == 0, "the lease is alive"
    session.execute(
        update(Job).where(Job.id == job.id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert leases.sweep_expired_leases(database_url) == 1
    session.refresh(job)
    assert (job.status, job.error) == (JobStatus.PENDING, leases.LOST_ERROR)
    [attempt] = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job.id))
    assert attempt.status is AttemptStatus.LOST


def test_a_stopping_worker_hands_its_jobs_back(
    session: Session, actor: Actor, database_url: str
) -> None:
    job = _running(session, actor, database_url, max_attempts=1)
    assert leases.hand_back_jobs(database_url, "other@h") == 0
    assert leases.hand_back_jobs(database_url, "w@h") == 1
    session.refresh(job)
    assert (job.status, job.error) == (JobStatus.FAILED, leases.SHUTDOWN_ERROR)
