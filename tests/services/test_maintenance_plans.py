"""The maintenance tasks read only their partial indexes, on both engines.

Beat's tasks look for a handful of jobs among millions: the unpublished ones, the
long-published pending ones, the held ones, expired leases, a stopped worker's
jobs, a redrive's jobs.  Each is served by a partial index that holds only such
jobs (migration ``0009_partial_job_indexes``), which a query can use only when its
own ``WHERE`` implies the index's condition.  The statements the tasks really run
are captured and EXPLAINed: a plan without the index, or with a scan of ``jobs``,
means the task reads the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db import get_engine
from app.services import leases, outbox, queue_control
from tests.support.plans import explain, selects_from

TASKS: dict[str, tuple[Callable[[str, Session], Any], str]] = {
    "relay": (lambda url, _s: outbox.relay_unpublished(url), "ix_jobs_unpublished"),
    "republish-lost": (
        lambda url, _s: outbox.republish_lost_messages(url, lambda _queue: None),
        "ix_jobs_pending_published",
    ),
    "republish-held": (
        lambda url, _s: outbox.republish_held_messages(url, after=timedelta(seconds=30)),
        "ix_jobs_held",
    ),
    "sweep": (lambda url, _s: leases.sweep_expired_leases(url), "ix_jobs_lease"),
    "hand-back": (lambda url, _s: leases.hand_back_jobs(url, "gone@host"), "ix_jobs_lease"),
    "redrive-watch": (
        lambda _url, session: queue_control.halt_failing_redrives(session),
        "ix_jobs_redrive",
    ),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_each_maintenance_task_reads_its_partial_index(
    database_url: str, session: Session, task: str
) -> None:
    run, index = TASKS[task]
    engine = get_engine(database_url)
    statements = selects_from(engine, "jobs", lambda: run(database_url, session))
    session.rollback()  # its locks would hold up the DROP INDEX below
    assert statements, "the task reads jobs"
    for statement, parameters in statements:
        with engine.connect() as connection, connection.begin() as transaction:
            if engine.dialect.name == "postgresql":
                _leave_only(connection, index)
            plan = explain(connection, statement, parameters)
            transaction.rollback()
        assert index in plan, plan
        assert "Seq Scan on jobs" not in plan and "SCAN jobs" not in plan, plan


def _leave_only(connection: Connection, index: str) -> None:
    # On a table this small PostgreSQL picks any index whose leading column
    # matches, whatever the real table would favour; without the others (dropped
    # in a transaction that is rolled back) the plan shows whether the query
    # implies the partial index's condition, which is what decides at scale.
    others = connection.exec_driver_sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs' AND indexname LIKE 'ix_%%'"
        " AND indexname <> %(keep)s",
        {"keep": index},
    ).scalars()
    for name in list(others):
        connection.exec_driver_sql(f'DROP INDEX "{name}"')


def test_the_maintenance_indexes_are_partial(database_url: str) -> None:
    engine = get_engine(database_url)
    query = (
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'"
        if engine.dialect.name == "postgresql"
        else "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
    )
    with engine.connect() as connection:
        definitions = dict(connection.exec_driver_sql(query).all())
    for name in {index for _run, index in TASKS.values()}:
        assert " WHERE " in definitions[name].upper(), definitions[name]
