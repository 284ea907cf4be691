"""The tracked baseline's task claims its row and records its success, once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from benchmarks import baseline_celery
from benchmarks.baseline_db import bench_tracked, make_engine


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(baseline_celery, "_tracked_sql", None)
    engine = make_engine(database_url)
    # Only this table, and dropped afterwards: the test database must hold
    # exactly what the migrations make (tests/test_migrations.py).
    bench_tracked.create(engine)
    try:
        yield engine
    finally:
        sql = baseline_celery._tracked_sql
        if sql is not None:
            sql.close()
        bench_tracked.drop(engine)
        engine.dispose()


def test_the_task_claims_its_row_then_records_its_success(engine: Engine) -> None:
    job_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(insert(bench_tracked), [{"id": job_id, "status": "pending"}])

    baseline_celery.tracked(job_id)
    with engine.connect() as connection:
        status, started, completed = connection.execute(
            select(bench_tracked.c.status, bench_tracked.c.started_at, bench_tracked.c.completed_at)
        ).one()
    assert status == "succeeded"
    assert started is not None and completed is not None and started <= completed

    # A second delivery finds nothing to claim and changes nothing.
    baseline_celery.tracked(job_id)
    with engine.connect() as connection:
        assert connection.scalar(select(bench_tracked.c.completed_at)) == completed
