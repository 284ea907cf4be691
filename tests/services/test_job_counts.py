"""The job counters equal ``COUNT(*)`` through every path that changes jobs, on both engines.

A seeded random walk drives the real core functions (submits, batches, claims,
successes, failures with retries, lease sweeps, cancels, retries, purges,
redrives, bulk retries and cancels, queue and organization deletes with their
cascades, folds) and after every step compares the counters with the jobs
grouped by organization, queue and status.  On PostgreSQL, threads submitting
and moving jobs of the same queues at once, while folds run, end with exact
counters and no deadlock.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, union_all, update
from sqlalchemy.orm import Session

from app.db import session_factory, session_scope
from app.errors import Conflict
from app.models import Job, JobCount, JobStatus, Organization, Queue, job_count_deltas, utcnow
from app.services import execution, job_counts, jobs, leases, queue_control, queues
from app.services.actors import Actor
from app.services.auth import Registration
from app.services.execution import Claimed
from tests.support import factories
from tests.support.factories import RecordingPublisher

Key = tuple[uuid.UUID, uuid.UUID, JobStatus]


def _counted(session: Session) -> dict[Key, int]:
    """The jobs per organization, queue and status, counted."""
    rows = session.execute(
        select(Job.organization_id, Job.queue_id, Job.status, func.count()).group_by(
            Job.organization_id, Job.queue_id, Job.status
        )
    )
    return {(org, queue, status): n for org, queue, status, n in rows}


def _counters(session: Session) -> dict[Key, int]:
    """The same from the counters: folded counts plus pending deltas, zeros left out."""
    counts = JobCount.__table__
    both = union_all(
        *(
            select(t.c.organization_id, t.c.queue_id, t.c.status, t.c.n)
            for t in (counts, job_count_deltas)
        )
    ).subquery()
    rows = session.execute(
        select(both.c.organization_id, both.c.queue_id, both.c.status, func.sum(both.c.n))
        .group_by(both.c.organization_id, both.c.queue_id, both.c.status)
        .having(func.sum(both.c.n) != 0)
    )
    return {(org, queue, JobStatus(status)): int(n) for org, queue, status, n in rows}


def _check(session: Session, step: str) -> None:
    assert _counters(session) == _counted(session), f"after {step}"


class Walk:
    """A random walk over the state changes of two organizations' jobs."""

    def __init__(self, session: Session, database_url: str, rng: random.Random) -> None:
        self.session = session
        self.database_url = database_url
        self.rng = rng
        self.actors: list[Actor] = []
        self.queues: dict[uuid.UUID, list[Queue]] = {}
        self.claimed: dict[uuid.UUID, Claimed] = {}
        for name in ("one", "two"):
            registration: Registration = factories.register(session, name)
            actor = factories.actor_of(registration.user)
            self.actors.append(actor)
            self.queues[actor.organization_id] = [
                factories.queue(session, actor, f"q{n}", settings={"max_attempts": 2})
                for n in range(2)
            ]
        session.commit()

    def _pick(self) -> tuple[Actor, Queue]:
        actor = self.rng.choice(self.actors)
        return actor, self.rng.choice(self.queues[actor.organization_id])

    def _job(self, *statuses: JobStatus) -> Job | None:
        ids = self.session.scalars(select(Job.id).where(Job.status.in_(statuses))).all()
        return self.session.get(Job, self.rng.choice(ids)) if ids else None

    def _actor_of(self, job: Job) -> Actor:
        return next(a for a in self.actors if a.organization_id == job.organization_id)

    def submit(self) -> None:
        actor, queue = self._pick()
        later = utcnow() + timedelta(hours=1) if self.rng.random() < 0.2 else None
        key = f"k{self.rng.randrange(8)}" if self.rng.random() < 0.3 else None
        jobs.submit_job(
            self.session,
            actor=actor,
            queue_id=queue.id,
            job_type="echo",
            scheduled_for=later,
            idempotency_key=key,
        )

    def submit_batch(self) -> None:
        actor, _ = self._pick()
        specs = [
            {"queue_id": self.rng.choice(self.queues[actor.organization_id]).id, "job_type": "echo"}
            for _ in range(self.rng.randint(1, 6))
        ]
        jobs.submit_jobs(self.session, actor=actor, jobs=specs)

    def claim(self) -> None:
        job = self._job(JobStatus.PENDING, JobStatus.SCHEDULED)
        if job is None:
            return
        # The retry backoff (or the schedule) has passed.
        self.session.execute(update(Job).where(Job.id == job.id).values(available_at=None))
        self.session.commit()
        claimed = execution.claim(
            self.database_url, job.id, job.attempt_count, "walker", lease_seconds=60
        )
        if claimed is not None:
            self.claimed[job.id] = claimed

    def finish(self) -> None:
        job = self._job(JobStatus.PROCESSING)
        if job is None or job.id not in self.claimed:
            return
        claimed = self.claimed.pop(job.id)
        self.session.commit()
        if self.rng.random() < 0.5:
            execution.record_success(self.database_url, job.id, claimed, {"ok": True})
        else:
            execution.record_failure(self.database_url, job.id, claimed, "boom", None)

    def sweep(self) -> None:
        job = self._job(JobStatus.PROCESSING)
        if job is None:
            return
        self.session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(lease_expires_at=utcnow() - timedelta(minutes=1))
        )
        self.session.commit()
        leases.sweep_expired_leases(self.database_url)

    def cancel(self) -> None:
        job = self._job(JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.PROCESSING)
        if job is not None:
            jobs.cancel_job(self.session, actor=self._actor_of(job), job_id=job.id)

    def retry(self) -> None:
        job = self._job(JobStatus.FAILED)
        if job is not None:
            jobs.retry_job(self.session, actor=self._actor_of(job), job_id=job.id)

    def purge(self) -> None:
        actor, queue = self._pick()
        queue_control.purge_queue(
            self.session, actor=actor, queue_id=queue.id, confirm_name=queue.name
        )

    def redrive(self) -> None:
        actor, queue = self._pick()
        queue_control.redrive_dead_letters(
            self.session, actor=actor, queue_id=queue.id, dry_run=False, max_per_second=1000
        )

    def bulk(self) -> None:
        actor, queue = self._pick()
        change = queue_control.bulk_retry if self.rng.random() < 0.5 else queue_control.bulk_cancel
        change(self.session, actor=actor, queue_id=queue.id)

    def delete_queue(self) -> None:
        actor, queue = self._pick()
        try:
            queues.delete_queue(self.session, actor=actor, queue_id=queue.id)
        except Conflict:
            return
        # Its finished jobs went with it (ON DELETE CASCADE); a new queue takes its place.
        listed = self.queues[actor.organization_id]
        listed[listed.index(queue)] = factories.queue(
            self.session, actor, f"q-{uuid.uuid4().hex[:8]}", settings={"max_attempts": 2}
        )

    def fold(self) -> None:
        job_counts.fold(self.session)

    def steps(self) -> dict[str, Callable[[], None]]:
        """Each kind of step, with how often it comes."""
        weighted = {
            self.submit: 6,
            self.submit_batch: 3,
            self.claim: 6,
            self.finish: 6,
            self.sweep: 1,
            self.cancel: 2,
            self.retry: 2,
            self.purge: 1,
            self.redrive: 1,
            self.bulk: 1,
            self.delete_queue: 1,
            self.fold: 2,
        }
        return {f"{step.__name__}#{n}": step for step, w in weighted.items() for n in range(w)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_counters_equal_count_through_every_state_change(
    session: Session, database_url: str, published: RecordingPublisher, seed: int
) -> None:
    walk = Walk(session, database_url, random.Random(seed))
    steps = walk.steps()
    names = sorted(steps)
    seen: set[str] = set()
    for n in range(150):
        name = walk.rng.choice(names)
        steps[name]()
        walk.session.commit()
        seen.add(name.split("#")[0])
        _check(session, f"step {n} ({name})")
    assert seen == {name.split("#")[0] for name in names}
    assert _counted(session), "the walk left jobs to count"
    # Deleting an organization takes its queues and jobs with it, counters included.
    gone = walk.actors[0].organization_id
    session.execute(delete(Organization).where(Organization.id == gone))
    session.commit()
    _check(session, "deleting an organization")
    assert all(org != gone for org, _, _ in _counters(session))
    job_counts.fold(session)
    session.commit()
    _check(session, "the last fold")


def test_list_totals_and_queue_stats_read_the_counters(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    other = factories.queue(session, actor, name="other")
    submitted = [factories.job(session, actor, queue if n < 3 else other) for n in range(5)]
    factories.job(session, actor, queue, scheduled_for=utcnow() + timedelta(hours=1))
    jobs.cancel_job(session, actor=actor, job_id=submitted[0].id)
    assert jobs.list_jobs(session, actor=actor, page=1, limit=2).total == 6
    assert jobs.list_jobs(session, actor=actor, page=1, limit=2, queue_id=queue.id).total == 4
    by_status = jobs.list_jobs(session, actor=actor, page=1, limit=2, status=JobStatus.PENDING)
    assert by_status.total == 4
    both = jobs.list_jobs(
        session, actor=actor, page=1, limit=2, queue_id=queue.id, status=JobStatus.PENDING
    )
    assert both.total == 2
    stats = queues.queue_stats(session, actor=actor, queue_id=queue.id)
    assert stats.counts == {
        JobStatus.PENDING: 2,
        JobStatus.SCHEDULED: 1,
        JobStatus.PROCESSING: 0,
        JobStatus.SUCCEEDED: 0,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 1,
    }
    # Another organization's jobs are not counted.
    stranger = factories.actor_of(factories.register(session, "stranger").user)
    factories.job(session, stranger, factories.queue(session, stranger))
    assert jobs.list_jobs(session, actor=actor, page=1, limit=2).total == 6


def test_a_fold_moves_deltas_into_counts_exactly(
    session: Session, actor: Actor, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    for _ in range(3):
        factories.job(session, actor, queue)
    session.commit()
    before = job_counts.count_jobs(session, actor.organization_id)
    job_counts.fold(session)
    session.commit()
    assert job_counts.count_jobs(session, actor.organization_id) == before
    assert before[JobStatus.PENDING] == 3
    assert session.scalar(select(func.count()).select_from(job_count_deltas)) == 0
    folded = session.scalar(
        select(JobCount.n).where(
            JobCount.queue_id == queue.id, JobCount.status == JobStatus.PENDING
        )
    )
    assert folded == 3
    # Counters that reach zero are dropped by the next fold.
    session.execute(delete(Job).where(Job.queue_id == queue.id))
    job_counts.fold(session)
    session.commit()
    assert session.scalar(select(func.count()).where(JobCount.queue_id == queue.id)) == 0


THREADS = 6
ROUNDS = 15


@pytest.mark.postgres
def test_concurrent_submits_and_transitions_keep_exact_counters_without_deadlock(
    database_url: str, published: RecordingPublisher
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's concurrent writers; SQLite has one writer at a time")
    with session_scope(database_url) as session:
        registration = factories.register(session)
        actor = factories.actor_of(registration.user)
        queue_ids = [factories.queue(session, actor, f"q{n}").id for n in range(2)]
    barrier = threading.Barrier(THREADS + 1, timeout=30)
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                with session_scope(database_url) as session:
                    submitted = jobs.submit_jobs(
                        session,
                        actor=actor,
                        jobs=[
                            {"queue_id": rng.choice(queue_ids), "job_type": "echo"}
                            for _ in range(rng.randint(1, 4))
                        ],
                    )
                    ids = [job.id for job in submitted]
                for job_id in ids:
                    claimed = execution.claim(database_url, job_id, 0, f"w{seed}", lease_seconds=60)
                    if claimed is None:
                        continue
                    if rng.random() < 0.5:
                        execution.record_success(database_url, job_id, claimed, None)
                    else:
                        execution.record_failure(database_url, job_id, claimed, "boom", None)
                with session_scope(database_url) as session:
                    # Cancel a few jobs of the queues, other threads' included, in id
                    # order: two transactions taking the same rows in opposite orders
                    # deadlock on the jobs themselves, whatever the counters do.
                    waiting = session.scalars(
                        select(Job.id)
                        .where(Job.status == JobStatus.PENDING)
                        .order_by(Job.id)
                        .limit(2)
                    ).all()
                    for job_id in waiting:
                        try:
                            with session.begin_nested():
                                jobs.cancel_job(session, actor=actor, job_id=job_id)
                        except Conflict:
                            pass
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def fold_loop() -> None:
        try:
            while not stop.is_set():
                with session_scope(database_url) as session:
                    job_counts.fold(session)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    folder = threading.Thread(target=fold_loop)
    for thread in [*threads, folder]:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join(120)
    stop.set()
    folder.join(60)
    assert not any(thread.is_alive() for thread in [*threads, folder])
    assert errors == []
    with session_factory(database_url)() as session:
        _check(session, "the concurrent run")
        assert sum(_counted(session).values()) >= THREADS * ROUNDS
