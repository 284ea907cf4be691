"""The job list reads each page off an index in its own order, on both engines.

The statements ``list_jobs`` really runs are captured and EXPLAINed with their
parameters.  A plan that sorts (SQLite: a temp B-tree; PostgreSQL: a Sort node)
or scans the table means the list's cost grows with the organization's job count.
The total is read off the summary counters' keys, not counted from ``jobs``.
On PostgreSQL sequential scans, bitmap scans and sorts are disabled for the
EXPLAIN: on a table this small the planner picks them whatever indexes exist
(depending on the statistics other tests left); what is checked is that an index
path in the list's order exists, since a disabled sort still appears when none does.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import JobStatus
from app.services import jobs
from app.services.actors import Actor
from tests.support import factories
from tests.support.plans import explain, selects_from


def _statements(session: Session, call: Any) -> list[tuple[str, Any]]:
    return selects_from(session.get_bind(), "job", call)


def _plan(session: Session, statement: str, parameters: Any) -> str:
    return explain(session.connection(), statement, parameters)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": JobStatus.PENDING},
        {"queue_id": "queue"},
        {"queue_id": "queue", "status": JobStatus.PENDING},
        {"after": "cursor"},
        {"queue_id": "queue", "status": JobStatus.PENDING, "after": "cursor"},
    ],
    ids=["all", "status", "queue", "queue+status", "after", "queue+status+after"],
)
def test_every_page_of_the_job_list_is_read_off_an_index_in_order(
    session: Session, actor: Actor, filters: dict[str, Any]
) -> None:
    queue = factories.queue(session, actor)
    other = factories.queue(session, actor, name="other")
    for n in range(30):
        factories.job(session, actor, queue if n % 2 else other, payload=n)
    args = {key: (queue.id if value == "queue" else value) for key, value in filters.items()}
    page = 3
    if "after" in args:
        # A cursor starts at its own page: the one after the first here.
        del args["after"]
        args["after"] = jobs.list_jobs(session, actor=actor, page=1, limit=5, **args).next_after
        page = 1
    statements = _statements(
        session, lambda: jobs.list_jobs(session, actor=actor, page=page, limit=5, **args)
    )
    assert len(statements) == 2, "one count, one page"
    (count, count_parameters), (page, page_parameters) = statements
    assert "FROM jobs" not in count and "FROM job_counts" in count, count
    postgres = session.get_bind().dialect.name == "postgresql"
    plan = _plan(session, count, count_parameters)
    if postgres:
        assert "pk_job_counts" in plan and "ix_job_count_deltas_org_queue" in plan, plan
        assert "Seq Scan" not in plan, plan
    else:
        # SQLite names a composite primary key's index after the table.
        assert "SEARCH job_counts USING" in plan and "ix_job_count_deltas_org_queue" in plan, plan
    plan = _plan(session, page, page_parameters)
    assert "ix_jobs_" in plan, plan
    if postgres:
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
    else:
        assert "TEMP B-TREE" not in plan and "SCAN jobs" not in plan, plan
