"""Small helpers that drive the REST API and read rows back, shared by the engine tests."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from app.config import Settings
from app.db import session_scope
from app.models import JobAttempt


def create_queue(client: FlaskClient, headers: dict[str, str], name: str, **settings: Any) -> dict:
    """Create a queue with ``settings`` and return its JSON."""
    response = client.post(
        "/api/v1/queues", json={"name": name, "settings": settings}, headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def submit_job(client: FlaskClient, headers: dict[str, str], queue: dict, **body: Any) -> dict:
    """Submit a job (``echo`` unless ``job_type`` says otherwise) and return its JSON."""
    response = client.post(
        "/api/v1/jobs", json={"queue_id": queue["id"], "job_type": "echo", **body}, headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def job_attempts(settings: Settings, job_id: str) -> list[JobAttempt]:
    """Every attempt of a job, in order, detached from the session."""
    with session_scope(settings.database_url) as session:
        rows = session.scalars(
            select(JobAttempt)
            .where(JobAttempt.job_id == uuid.UUID(job_id))
            .order_by(JobAttempt.number)
        ).all()
        session.expunge_all()
        return list(rows)
