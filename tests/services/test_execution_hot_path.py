"""What one job costs the worker in SQL, and that queue policies still apply on that path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.orm import Session

import tests.support.handlers  # noqa: F401 - registers the test handlers
from app.db import get_engine, sqlite_writer
from app.models import AttemptStatus, Job, JobAttempt, JobStatus
from app.services import execution, policies
from app.services.actors import Actor
from app.services.execution import Outcome
from app.services.outbox import Dispatch
from tests.support import factories
from tests.support.execution import LEASE_SECONDS, execute
from tests.support.factories import RecordingPublisher
from tests.support.plans import statements_received


@pytest.fixture
def statements(database_url: str) -> Iterator[list[str]]:
    """Every statement the test sends its database, in order."""
    with statements_received(get_engine(database_url)) as seen:
        yield seen


def _outcome(session: Session, job: Job) -> tuple[JobStatus, list[AttemptStatus]]:
    session.expire_all()
    attempts = session.scalars(select(JobAttempt.status).where(JobAttempt.job_id == job.id)).all()
    return session.get_one(Job, job.id).status, list(attempts)


def test_a_job_of_a_queue_without_a_policy_costs_one_claim_and_one_finish(
    session: Session,
    actor: Actor,
    database_url: str,
    store: Any,
    published: RecordingPublisher,
    statements: list[str],
) -> None:
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    session.commit()
    statements.clear()
    assert execute(str(job.id), 0, "w@h", database_url) == Outcome.SUCCEEDED
    # No policy read, no separate read of the queue's settings: the claim's UPDATE
    # returns them, and its attempt row goes in the same transaction.  On PostgreSQL
    # the claim and the success are one statement each, and each commits itself
    # (autocommit: no BEGIN and COMMIT round trips).
    if get_engine(database_url).dialect.name == "postgresql":
        assert statements == ["WITH CLAIMED AS (autocommit)", "WITH SUCCEEDED AS (autocommit)"]
    else:
        assert statements == [
            "UPDATE JOBS SET",
            "INSERT INTO JOB_ATTEMPTS",
            "COMMIT",
            "UPDATE JOBS SET",
            "UPDATE JOB_ATTEMPTS SET",
            "COMMIT",
        ]
    assert _outcome(session, job) == (JobStatus.SUCCEEDED, [AttemptStatus.SUCCEEDED])


def test_only_the_watched_databases_statements_are_counted(
    database_url: str, statements: list[str], tmp_path: Any
) -> None:
    # Another test's background thread (a publication stamp, a lease renewal) may
    # write to its own database while this one counts: that must not show here.
    other = get_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.begin() as connection:
        connection.execute(text("CREATE TABLE elsewhere (n INTEGER)"))
    with get_engine(database_url).begin() as connection:
        connection.execute(text("SELECT 1"))

    assert statements == ["SELECT 1"] + (
        [] if get_engine(database_url).dialect.name == "postgresql" else ["COMMIT"]
    )


def test_a_background_threads_statements_are_not_counted(
    database_url: str, statements: list[str]
) -> None:
    # A lease keeper renewing, or a publication stamp, writes to the same database
    # from a thread of its own while a test counts what its own calls cost.
    def background() -> None:
        with get_engine(database_url).begin() as connection:
            connection.execute(text("SELECT 2"))

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    with get_engine(database_url).begin() as connection:
        connection.execute(text("SELECT 1"))

    assert statements == ["SELECT 1"] + (
        [] if get_engine(database_url).dialect.name == "postgresql" else ["COMMIT"]
    )


def test_a_queue_whose_policy_was_removed_takes_the_short_path(
    session: Session,
    actor: Actor,
    database_url: str,
    store: Any,
    published: RecordingPublisher,
    statements: list[str],
) -> None:
    queue = factories.queue(session, actor)
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy={"max_concurrent_jobs": 1})
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy={})
    job = factories.job(session, actor, queue)
    session.commit()
    statements.clear()
    assert execute(str(job.id), 0, "w@h", database_url) == Outcome.SUCCEEDED
    assert not [s for s in statements if s.startswith("SELECT")], statements


def test_a_queue_with_a_policy_still_holds_jobs_back_before_the_claim(
    session: Session, actor: Actor, database_url: str, store: Any, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    policy = {"max_dispatches_per_second": 0.001, "burst": 1}
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy=policy)
    first, second = factories.job(session, actor, queue), factories.job(session, actor, queue)
    session.commit()
    assert execute(str(first.id), 0, "w@h", database_url) == Outcome.SUCCEEDED
    assert execute(str(second.id), 0, "w@h", database_url) == Outcome.HELD_BACK
    assert _outcome(session, second) == (JobStatus.PENDING, [])
    assert [d.job_id for d in published.of_type(Dispatch) if d.eta is not None] == [second.id]


def test_the_short_claim_leaves_a_job_it_cannot_take_untouched(
    session: Session, actor: Actor, database_url: str, store: Any, published: RecordingPublisher
) -> None:
    queue = factories.queue(session, actor)
    policies.set_policy(session, actor=actor, queue_id=queue.id, policy={"max_concurrent_jobs": 1})
    job = factories.job(session, actor, queue)
    session.commit()
    before = len(published.staged)
    claimed = execution.claim(
        database_url, job.id, 0, "w@h", lease_seconds=LEASE_SECONDS, unlimited=True
    )
    assert claimed is None
    assert _outcome(session, job) == (JobStatus.PENDING, [])
    assert len(published.staged) == before, "nothing was rescheduled"


def test_on_sqlite_the_claim_and_the_success_wait_their_turn_on_the_writer_lock(
    session: Session, actor: Actor, database_url: str, store: Any, published: RecordingPublisher
) -> None:
    engine = get_engine(database_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers do not queue on one lock")
    queue = factories.queue(session, actor)
    job = factories.job(session, actor, queue)
    session.commit()
    outcomes: list[Outcome] = []
    runner = threading.Thread(
        target=lambda: outcomes.append(execute(str(job.id), 0, "w@h", database_url))
    )
    with sqlite_writer(engine):
        runner.start()
        runner.join(0.5)
        # Another writer holds the lock: the claim has not written anything yet.
        assert runner.is_alive()
        assert _outcome(session, job) == (JobStatus.PENDING, [])
    runner.join(30)
    assert outcomes == [Outcome.SUCCEEDED]
    assert _outcome(session, job) == (JobStatus.SUCCEEDED, [AttemptStatus.SUCCEEDED])


@pytest.mark.parametrize("dialect", [sqlite.dialect(), psycopg.dialect()])
def test_the_hot_paths_statements_compile_once_for_the_dbapi(dialect: Any) -> None:
    prepared = [
        *execution._CLAIM_ONLY.values(),
        *execution._CLAIM_ONE_TRIP.values(),
        execution._ADD_ATTEMPT,
        execution._SUCCEED_JOB,
        execution._SUCCEED_ATTEMPT,
        execution._SUCCEED_ONE_TRIP,
    ]
    # Compiling refuses what SQLAlchemy would have to finish at every execution
    # (Python-side defaults, an expanding IN); each is compiled once per dialect.
    assert all(p.compiled(dialect) is p.compiled(dialect) for p in prepared)
