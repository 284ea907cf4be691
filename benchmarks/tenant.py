"""A TaskForge tenant to benchmark against: a migrated database, a user, a token, a queue.

Everything is created through TaskForge's own REST API (Flask's test client,
in-process), exactly as a user would: register, log in, create a queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

PASSWORD = "bench-password-123"


class SetupError(RuntimeError):
    """TaskForge refused a setup request."""


@dataclass(frozen=True)
class Tenant:
    """Who submits in a benchmark, and where."""

    database_url: str
    user_id: str
    organization_id: str
    queue_id: str
    token: str

    @property
    def celery_queue(self) -> str:
        """The Celery queue TaskForge publishes this tenant's jobs to."""
        return f"tf.{self.queue_id}"

    @property
    def auth_header(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.token}"


def _check(response: Any, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        raise SetupError(f"{what}: HTTP {response.status_code}: {response.get_data(as_text=True)}")
    body: dict[str, Any] = response.get_json()
    return body


def prepare(database_url: str, redis_url: str) -> Tenant:
    """Migrate ``database_url`` and create a user, an access token and a queue."""
    from app.api.app import create_app
    from app.config import load_settings
    from app.migrate import upgrade

    upgrade(database_url)
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_enabled=False,
        # A full run takes ~15 minutes; the token must outlive it.
        access_token_minutes=240,
    )
    client = create_app(settings).test_client()
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    registered = _check(
        client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "organization_name": "bench"},
        ),
        201,
        "register",
    )
    tokens = _check(
        client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}),
        200,
        "login",
    )
    token = str(tokens["access_token"])
    queue = _check(
        client.post(
            "/api/v1/queues",
            json={"name": f"bench-{uuid.uuid4().hex[:6]}"},
            headers={"Authorization": f"Bearer {token}"},
        ),
        201,
        "create queue",
    )
    return Tenant(
        database_url=database_url,
        user_id=str(registered["user_id"]),
        organization_id=str(registered["organization_id"]),
        queue_id=str(queue["id"]),
        token=token,
    )


def reset_jobs(database_url: str) -> None:
    """Delete every job (and attempt) and every baseline row, so each rep starts equal."""
    from app.db import get_engine
    from app.models import Job, JobAttempt
    from benchmarks.baseline_db import bench_jobs, ensure_table

    engine = get_engine(database_url)
    ensure_table(engine)
    with engine.begin() as connection:
        connection.execute(delete(JobAttempt))
        connection.execute(delete(Job))
        connection.execute(delete(bench_jobs))


def count_rows(database_url: str) -> tuple[int, int, int]:
    """Return (jobs, jobs with published_at, baseline rows)."""
    from app.db import get_engine
    from app.models import Job
    from benchmarks.baseline_db import bench_jobs

    with get_engine(database_url).connect() as connection:
        jobs = connection.scalar(select(func.count()).select_from(Job)) or 0
        published = (
            connection.scalar(
                select(func.count()).select_from(Job).where(Job.published_at.is_not(None))
            )
            or 0
        )
        base = connection.scalar(select(func.count()).select_from(bench_jobs)) or 0
    return int(jobs), int(published), int(base)
