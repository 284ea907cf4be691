"""Bulk submit does per-batch work once, not once per job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from app.config import Settings
from app.db import get_engine, session_scope
from app.models import Job, utcnow
from app.services.auth import actor_for_user_id
from app.services.jobs import submit_jobs
from tasks.publisher import flush_stamps
from tests.conftest import Account


def test_a_batch_loads_its_queue_once(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        with session_scope(settings.database_url) as session:
            actor = actor_for_user_id(session, owner.user_id)
            jobs = submit_jobs(
                session,
                actor=actor,
                jobs=[
                    {"queue_id": queue["id"], "job_type": "echo", "payload": i} for i in range(50)
                ],
            )
        flush_stamps()  # the publish stamp is written off the request path
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(jobs) == 50
    queue_selects = [
        s for s in statements if s.lstrip().startswith("SELECT") and "FROM queues" in s
    ]
    assert len(queue_selects) <= 2, f"{len(queue_selects)} queue lookups for one batch"
    stamps = [s for s in statements if s.lstrip().startswith("UPDATE jobs SET published_at")]
    assert len(stamps) == 1, "the whole batch is stamped published by one statement"
    with session_scope(settings.database_url) as session:
        unpublished = session.scalar(
            select(func.count()).select_from(Job).where(Job.published_at.is_(None))
        )
    assert unpublished == 0


def test_a_batch_stores_every_column_of_the_jobs_it_returns(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    later = utcnow() + timedelta(hours=1)
    specs: list[dict[str, Any]] = [
        {"queue_id": queue["id"], "job_type": "echo", "payload": None},
        {
            "queue_id": queue["id"],
            "job_type": "echo",
            "payload": {"b": [1, 'x"y,{}'], "a": 2},
            "priority": 7,
            "max_attempts": 5,
            "idempotency_key": "key-1",
        },
        {"queue_id": queue["id"], "job_type": "echo", "payload": "text", "scheduled_for": later},
    ]
    table = Job.__table__
    with session_scope(settings.database_url) as session:
        actor = actor_for_user_id(session, owner.user_id)
        jobs = submit_jobs(session, actor=actor, jobs=specs)
        returned = [
            {column.key: getattr(job, column.key) for column in table.columns} for job in jobs
        ]
        # Read in the same transaction: the publish after commit stamps the rows.
        stored = {
            row["id"]: dict(row) for row in session.connection().execute(select(table)).mappings()
        }
    assert [stored[row["id"]] for row in returned] == returned
    assert [row["status"] for row in returned] == ["pending", "pending", "scheduled"]
    assert returned[2]["available_at"] == later


LIST_PAYLOADS: list[Any] = [[1, 2], [], [[1], [2, 3]], [{"n": [0]}, {"n": [1]}], [None], 0]


def test_list_payloads_are_stored_as_sent(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    """A JSON array is one payload, never an array dimension of the batch's INSERT."""
    with session_scope(settings.database_url) as session:
        actor = actor_for_user_id(session, owner.user_id)
        batch = submit_jobs(
            session,
            actor=actor,
            jobs=[
                {"queue_id": queue["id"], "job_type": "echo", "payload": payload}
                for payload in LIST_PAYLOADS
            ],
        )
        single = submit_jobs(
            session,
            actor=actor,
            jobs=[{"queue_id": queue["id"], "job_type": "echo", "payload": [[1, 2]]}],
        )
        ids = [job.id for job in [*batch, *single]]
    with session_scope(settings.database_url) as session:
        stored = {job.id: job.payload for job in session.scalars(select(Job))}
    assert [stored[job_id] for job_id in ids] == [*LIST_PAYLOADS, [[1, 2]]]
