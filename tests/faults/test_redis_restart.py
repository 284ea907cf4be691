"""Restart Redis (AOF on) under 1,000 submits: submits recover, and every accepted job runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.api.app import create_app
from app.config import Settings
from app.db import session_scope
from app.models import Job, JobStatus
from app.redis_server import RedisProcess, free_port, start_redis
from app.services.outbox import relay_unpublished
from tasks.celery_app import use_broker
from tests.conftest import PASSWORD
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

JOBS = 1000
# Once Redis is back, submits must succeed again: this many in a row after the restart.
AFTER_RESTART = 50


@pytest.fixture
def restartable_redis(tmp_path: Path, settings: Settings) -> Iterator[RedisProcess]:
    """A private Redis with AOF persistence that the test may stop and start."""
    server = start_redis(free_port(), tmp_path / "redis", appendonly=True)
    server.wait_ready()
    yield server
    server.stop()
    use_broker(settings.redis_url)


def _count(settings: Settings, status: JobStatus, ids: set[uuid.UUID]) -> int:
    with session_scope(settings.database_url) as session:
        query = select(func.count()).where(Job.status == status, Job.id.in_(ids))
        return int(session.scalar(query) or 0)


def test_redis_restart_loses_no_accepted_job(
    settings: Settings, restartable_redis: RedisProcess, tmp_path: Path
) -> None:
    faulty = settings.replace(redis_url=restartable_redis.url)
    client = create_app(faulty).test_client()
    email = f"fault-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "organization_name": "Faults"}
    assert client.post("/api/v1/auth/register", json=body).status_code == 201
    token = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    queue = client.post("/api/v1/queues", json={"name": "q"}, headers=headers).json

    accepted: list[uuid.UUID] = []
    refused: list[int] = []
    progress, restored = threading.Event(), threading.Event()
    streak = 0  # accepted in a row since Redis was back

    def submit(i: int) -> None:
        nonlocal streak
        response = client.post(
            "/api/v1/jobs",
            json={"queue_id": queue["id"], "job_type": "echo", "payload": i},
            headers=headers,
        )
        if response.status_code == 201:
            accepted.append(uuid.UUID(response.json["id"]))
            streak += 1 if restored.is_set() else 0
        else:
            assert response.status_code == 503, response.json
            refused.append(i)
            streak = 0

    def submit_all() -> None:
        # How many a loaded machine refuses during the outage varies; what must hold
        # is that submits succeed again once Redis is back, and that nothing accepted
        # is lost.
        for i in range(JOBS):
            submit(i)
            if i == JOBS // 4:
                progress.set()
        restored.wait(120)
        deadline = time.monotonic() + 120
        i = JOBS
        while streak < AFTER_RESTART and time.monotonic() < deadline:
            submit(i)
            i += 1

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    assert progress.wait(120), "the submitter made no progress"
    data_dir = restartable_redis.data_dir
    restartable_redis.stop()
    time.sleep(1)  # the outage itself: Redis stays down for a second
    restarted = start_redis(restartable_redis.port, data_dir, appendonly=True)
    restarted.wait_ready()
    restored.set()
    try:
        submitter.join(300)
        assert not submitter.is_alive()
        assert len(accepted) + len(refused) >= JOBS
        assert streak >= AFTER_RESTART, f"submits did not recover: {len(refused)} refused"
        worker = WorkerProcess(faulty, tmp_path / "worker.log", "-c", "2")
        try:
            worker.wait_ready()
            ids = set(accepted)
            wait_for(
                lambda: (
                    relay_unpublished(faulty.database_url) >= 0
                    and _count(faulty, JobStatus.SUCCEEDED, ids) == len(ids)
                ),
                180,
                f"only {_count(faulty, JobStatus.SUCCEEDED, ids)} of {len(ids)} accepted jobs ran\n"
                f"{worker.log()[-2000:]}",
                interval=1,
            )
        finally:
            worker.stop()
    finally:
        restarted.stop()
