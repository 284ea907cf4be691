"""Bulk submit does per-batch work once, not once per job."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from app.config import Settings
from app.db import get_engine, session_scope
from app.models import Job
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
