"""Broker down during submit: the job is accepted and published once Redis is back."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.api.app import create_app
from app.config import Settings
from app.db import session_scope
from app.models import Job
from app.services.auth import actor_for_user_id
from app.services.jobs import submit_job
from app.services.outbox import relay_unpublished
from tasks.celery_app import use_broker
from tests.conftest import Account

DEAD_BROKER = "redis://127.0.0.1:1/0"


def test_submit_with_the_broker_down_is_accepted_then_relayed(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    use_broker(DEAD_BROKER)
    try:
        started = time.monotonic()
        with session_scope(settings.database_url) as session:
            actor = actor_for_user_id(session, owner.user_id)
            job_id = submit_job(session, actor=actor, queue_id=queue["id"], job_type="echo").id
        elapsed = time.monotonic() - started
        assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 0
    finally:
        use_broker(settings.redis_url)
    assert elapsed < 10, f"a dead broker held the submit for {elapsed:.1f}s"
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.published_at is None
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 1
    with session_scope(settings.database_url) as session:
        assert session.get(Job, uuid.UUID(str(job_id))).published_at is not None


def test_token_requests_fail_closed_with_503_when_redis_is_down(
    settings: Settings, owner: Account, queue: dict
) -> None:
    down = create_app(settings.replace(redis_url=DEAD_BROKER)).test_client()
    try:
        response = down.post(
            "/api/v1/jobs",
            json={"queue_id": queue["id"], "job_type": "echo"},
            headers=owner.headers,
        )
    finally:
        use_broker(settings.redis_url)
    assert response.status_code == 503
    assert response.json["status_code"] == 503
    assert "unavailable" in response.json["error"]
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
