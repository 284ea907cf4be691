"""A submit's publish stamp is written off the request path, in one statement per window."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event

from app.config import Settings
from app.db import get_engine, session_scope
from app.models import Job
from tests.conftest import Account
from tests.support.workers import wait_for


def _stamped(settings: Settings, job_id: str) -> bool:
    with session_scope(settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        return job is not None and job.published_at is not None


def test_a_submit_does_one_write_transaction_and_its_stamp_follows(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    request_thread = threading.get_ident()
    in_request: list[str] = []
    elsewhere: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        (in_request if threading.get_ident() == request_thread else elsewhere).append(statement)

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        jobs = [
            client.post(
                "/api/v1/jobs",
                json={"queue_id": queue["id"], "job_type": "echo"},
                headers=owner.headers,
            ).json
            for _ in range(5)
        ]
        wait_for(
            lambda: all(_stamped(settings, job["id"]) for job in jobs),
            10,
            "the submits were never stamped published",
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    writes = [s for s in in_request if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert all(s.lstrip().upper().startswith("INSERT INTO JOBS") for s in writes), writes
    assert len(writes) == 5
    stamps = [s for s in elsewhere if s.lstrip().upper().startswith("UPDATE JOBS SET PUBLISHED_AT")]
    assert 1 <= len(stamps) <= 5
