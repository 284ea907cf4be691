"""Statements run on the DBAPI connection behave as SQLAlchemy's execution of them does."""

from __future__ import annotations

import threading
import uuid
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, create_engine, func, insert, select, update
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InvalidRequestError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.db import get_engine, is_unavailable, sqlite_writer
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, utcnow
from app.prepared import Prepared, write
from app.services.actors import Actor
from tests.support import factories
from tests.support.factories import RecordingPublisher
from tests.support.postgres import terminate_backend

_jobs = cast(Table, Job.__table__)
_attempts = cast(Table, JobAttempt.__table__)

# UUID, enum, JSON and time zone-aware datetime columns, each with its own processors.
_READ_BACK = Prepared(
    select(_jobs.c.id, _jobs.c.status, _jobs.c.payload, _jobs.c.started_at).where(
        _jobs.c.id == bindparam("p_id")
    )
)
_START = Prepared(
    update(_jobs)
    .where(_jobs.c.id == bindparam("p_id"), _jobs.c.status == JobStatus.PENDING)
    .values(
        status=JobStatus.PROCESSING, started_at=bindparam("p_now"), updated_at=bindparam("p_now")
    )
)
_ADD_ATTEMPT = Prepared(
    insert(_attempts).values(
        id=bindparam("p_attempt_id"),
        job_id=bindparam("p_id"),
        number=1,
        status=AttemptStatus.RUNNING,
        started_at=bindparam("p_now"),
    )
)


@pytest.fixture
def job(session: Session, actor: Actor, published: RecordingPublisher) -> Job:
    made = factories.job(session, actor, factories.queue(session, actor), payload={"n": [1, 2]})
    session.commit()
    return made


def _values(job: Job) -> dict[str, Any]:
    return {"p_id": job.id, "p_now": utcnow(), "p_attempt_id": uuid.uuid4()}


def test_a_row_comes_back_typed_as_sqlalchemy_returns_it(database_url: str, job: Job) -> None:
    values = _values(job)
    with write(database_url) as writer:
        assert writer.execute(_START, values) == 1
        row = writer.one_or_none(_READ_BACK, values)
    with get_engine(database_url).connect() as connection:
        expected = connection.execute(_READ_BACK.statement, values).one()
    assert tuple(row) == tuple(expected)
    assert row.id == job.id
    assert row.status is JobStatus.PROCESSING
    assert row.payload == {"n": [1, 2]}
    assert row.started_at == values["p_now"]


def test_a_block_that_raises_writes_nothing_and_lets_the_next_writer_go(
    database_url: str, session: Session, job: Job
) -> None:
    if get_engine(database_url).dialect.name != "sqlite":
        pytest.skip("on PostgreSQL each prepared statement commits by itself")
    with pytest.raises(RuntimeError), write(database_url) as writer:
        assert writer.execute(_START, _values(job)) == 1
        raise RuntimeError("the caller failed")
    assert session.scalar(select(Job.status).where(Job.id == job.id)) is JobStatus.PENDING

    def take_the_turn() -> None:
        with sqlite_writer(get_engine(database_url)):
            pass

    other = threading.Thread(target=take_the_turn)
    other.start()
    other.join(5)
    assert not other.is_alive(), "the writer turn was given back"


def test_the_transaction_holds_the_writer_turn_on_sqlite(database_url: str, job: Job) -> None:
    engine = get_engine(database_url)
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers do not queue on one lock")
    done = threading.Event()

    def start() -> None:
        with write(database_url) as writer:
            writer.execute(_START, _values(job))
        done.set()

    with sqlite_writer(engine):
        runner = threading.Thread(target=start)
        runner.start()
        assert not done.wait(0.5), "another writer holds the turn"
    runner.join(10)
    assert done.is_set()


def test_a_dbapi_error_comes_out_as_sqlalchemys(database_url: str, job: Job) -> None:
    values = _values(job)
    with write(database_url) as writer:
        writer.execute(_ADD_ATTEMPT, values)
    with pytest.raises(IntegrityError), write(database_url) as writer:
        writer.execute(_ADD_ATTEMPT, {**values, "p_attempt_id": uuid.uuid4()})
    with write(database_url) as writer:
        assert writer.execute(_START, values) == 1, "the connection went back to the pool usable"


def test_a_missing_value_is_refused_before_anything_is_sent(database_url: str, job: Job) -> None:
    with pytest.raises(InvalidRequestError, match="p_now"), write(database_url) as writer:
        writer.execute(_START, {"p_id": job.id})


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(select(_jobs.c.id).where(_jobs.c.id.in_([uuid.uuid4()])), id="expanding IN"),
        pytest.param(
            insert(_attempts).values(job_id=bindparam("p_id"), number=1),
            id="a Python-side default (the attempt's id)",
        ),
    ],
)
def test_what_sqlalchemy_must_finish_at_execution_is_refused(
    database_url: str, statement: Any
) -> None:
    with pytest.raises(ArgumentError), write(database_url) as writer:
        writer.one_or_none(Prepared(statement), {})


def test_a_connection_that_lost_its_server_is_unavailable_then_replaced(
    database_url: str, job: Job
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to lose a connection to")
    observer = create_engine(database_url, poolclass=NullPool)
    backend_pid = Prepared(select(func.pg_backend_pid()))
    try:
        with pytest.raises(DBAPIError) as lost, write(database_url) as writer:
            pid = writer.one_or_none(backend_pid, {})[0]
            terminate_backend(observer, pid)
            writer.execute(_START, _values(job))
    finally:
        observer.dispose()
    assert lost.value.connection_invalidated
    assert is_unavailable(lost.value)
    with write(database_url) as writer:
        assert writer.one_or_none(backend_pid, {})[0] != pid
        assert writer.execute(_START, _values(job)) == 1
