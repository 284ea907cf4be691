"""Growing, shrinking and restarting a worker's pool under load strands no job and no process."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.models import Job, JobStatus
from app.services.leases import sweep_expired_leases
from tasks.celery_app import app as celery_app
from tests.conftest import Account
from tests.support.api import create_queue, submit_job
from tests.support.workers import WorkerProcess, wait_for

# Not ``real_workers``: this runs on PostgreSQL too, where the hang was seen (a pool
# process stuck in the driver's connect after a fork).
pytestmark = [pytest.mark.slow]

COMMANDS = ("pool_grow", "pool_shrink", "pool_restart")
CHANGES = 20


def _control(name: str, command: str) -> dict[str, Any]:
    """Send a pool command to ``name``; retry (bounded) while a busy pool refuses a shrink."""
    arguments = {} if command == "pool_restart" else {"n": 1}
    deadline = time.monotonic() + 30
    while True:
        replies = celery_app.control.broadcast(
            command, arguments=arguments, destination=[name], reply=True, timeout=10, limit=1
        )
        reply = dict(replies[0][name]) if replies else {}
        # Celery shrinks only an idle process: a busy pool answers with an error.
        if "busy" not in str(reply.get("error")) or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def test_pool_changes_under_load_leave_every_job_succeeded(
    client: FlaskClient,
    owner: Account,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A heartbeat every second keeps the main process's thread in SQL while it forks.
    monkeypatch.setenv("TASKFORGE_HEARTBEAT_SECONDS", "1")
    # Celery's shrink and restart may end a process that just took a job (its message
    # comes back and is dropped: the attempt is claimed); the lease sweeper, which
    # beat runs and this test runs by hand, retries such an attempt one lease later.
    monkeypatch.setenv("TASKFORGE_LEASE_SECONDS", "3")
    queue = create_queue(client, owner.headers, "churn")
    name = "churn@localhost"
    worker = start_worker("-n", name, "-c", "2")
    jobs: list[dict[str, Any]] = []
    for command in itertools.islice(itertools.cycle(COMMANDS), CHANGES):
        jobs += [
            submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 0.05})
            for _ in range(3)
        ]
        reply = _control(name, command)
        assert "ok" in reply, f"{command}: {reply}\n{worker.log()[-3000:]}"
    ids = [uuid.UUID(job["id"]) for job in jobs]

    def counts() -> dict[JobStatus, int]:
        with session_scope(settings.database_url) as session:
            rows = session.execute(
                select(Job.status, func.count()).where(Job.id.in_(ids)).group_by(Job.status)
            )
            return {status: int(count) for status, count in rows}

    wait_for(
        lambda: (
            sweep_expired_leases(settings.database_url) >= 0
            and counts() == {JobStatus.SUCCEEDED: len(ids)}
        ),
        180,
        f"jobs not all succeeded: {counts()}\n{worker.log()[-4000:]}",
        interval=0.5,
    )
    stats = celery_app.control.inspect(destination=[name], timeout=10).stats() or {}
    assert stats[name]["pool"]["processes"], stats
    after = submit_job(client, owner.headers, queue, job_type="echo", payload={"after": True})
    wait_for(
        lambda: (
            client.get(f"/api/v1/jobs/{after['id']}", headers=owner.headers).json["status"]
            == "succeeded"
        ),
        60,
        "a job submitted after the churn never ran",
    )
