"""True Celery states, revokes from any Celery client, cancel of a running job: real workers."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app.config import Settings
from app.models import AttemptStatus
from tasks.celery_app import app as celery_app
from tests.conftest import Account
from tests.support.api import create_queue, job_attempts, submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]


class Events:
    """Every Celery event on the broker, captured from a background thread."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the event receiver did not start"

    def _capture(self) -> None:
        with celery_app.connection_for_read() as connection:
            self._receiver = celery_app.events.Receiver(
                connection, handlers={"*": self.seen.append}
            )
            for _ in self._receiver.consume(limit=None, timeout=None, wakeup=False):
                self._ready.set()
            self._ready.set()

    def of(self, task_id: str, kind: str) -> dict[str, Any] | None:
        """The first ``kind`` event of ``task_id`` seen so far."""
        return next((e for e in self.seen if e.get("uuid") == task_id and e["type"] == kind), None)

    def stop(self) -> None:
        """Stop capturing."""
        self._receiver.should_stop = True
        self._thread.join(10)


@pytest.fixture
def events(settings: Settings) -> Iterator[Events]:
    """Celery events of the test's broker."""
    captured = Events()
    yield captured
    captured.stop()


def _status(client: FlaskClient, owner: Account, job: dict) -> str:
    return str(client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json["status"])


def _wait_status(
    client: FlaskClient, owner: Account, job: dict, status: str, worker: WorkerProcess
) -> None:
    wait_for(
        lambda: _status(client, owner, job) == status,
        60,
        f"job never became {status} (is {_status(client, owner, job)}):\n{worker.log()[-3000:]}",
    )


def _unacked(settings: Settings) -> int:
    # kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
    with redis.Redis.from_url(settings.redis_url) as broker:
        return int(broker.hlen("unacked"))


def test_failed_attempts_end_in_retry_then_failure_with_their_traceback_and_are_acked(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start, events: Events
) -> None:
    queue = create_queue(client, owner.headers, "states", retry_backoff_seconds=0)
    worker = start_worker("-c", "1")
    failing = submit_job(
        client, owner.headers, queue, job_type="fail", payload={"message": "boom"}, max_attempts=2
    )
    echo = submit_job(client, owner.headers, queue, job_type="echo", payload={"x": 1})
    _wait_status(client, owner, failing, "failed", worker)
    _wait_status(client, owner, echo, "succeeded", worker)
    first, last = f"{failing['id']}:0", f"{failing['id']}:1"
    wait_for(lambda: events.of(last, "task-failed"), 30, f"no task-failed: {events.seen}")
    retried, failed = events.of(first, "task-retried"), events.of(last, "task-failed")
    assert retried is not None and "JobFailed('boom')" in retried["exception"]
    assert "raise JobFailed" in retried["traceback"]
    assert failed is not None and failed["exception"] == "JobFailed('boom')"
    assert "raise JobFailed" in failed["traceback"]
    assert events.of(first, "task-failed") is None and events.of(last, "task-retried") is None
    wait_for(lambda: events.of(f"{echo['id']}:0", "task-succeeded"), 30, "no task-succeeded")
    # Both failed attempts' messages were acked: nothing to redeliver, no third attempt.
    wait_for(lambda: _unacked(settings) == 0, 30, "a failed attempt's message was not acked")
    assert [a.status for a in job_attempts(settings, failing["id"])] == [AttemptStatus.FAILED] * 2


def _celery_control(settings: Settings, tmp_path: Path, *argv: str) -> str:
    """Run stock ``celery control`` on a bare app (no TaskForge configuration)."""
    (tmp_path / "bare.py").write_text("from celery import Celery\n\napp = Celery()\n")
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "bare", f"--broker={settings.redis_url}", *argv],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


def test_a_revoke_from_the_celery_cli_cancels_the_job(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start, tmp_path: Path
) -> None:
    queue = create_queue(client, owner.headers, "revoked")
    worker = start_worker("-c", "1")
    assert (
        client.post(f"/api/v1/queues/{queue['id']}/pause", headers=owner.headers).status_code < 300
    )
    waiting = submit_job(client, owner.headers, queue, job_type="echo", payload={})
    kept = submit_job(client, owner.headers, queue, job_type="echo", payload={})
    out = _celery_control(settings, tmp_path, "control", "revoke", f"{waiting['id']}:0")
    assert "revoked" in out, out
    assert (
        client.post(f"/api/v1/queues/{queue['id']}/resume", headers=owner.headers).status_code < 300
    )
    _wait_status(client, owner, waiting, "cancelled", worker)
    _wait_status(client, owner, kept, "succeeded", worker)
    assert job_attempts(settings, waiting["id"]) == []

    running = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 600})
    _wait_status(client, owner, running, "processing", worker)
    # Celery's CLI spells ``revoke(..., terminate=True, signal=...)`` as ``control terminate``.
    out = _celery_control(
        settings, tmp_path, "control", "terminate", "SIGKILL", f"{running['id']}:0"
    )
    assert "terminate" in out.lower(), out
    _wait_status(client, owner, running, "cancelled", worker)
    assert [a.status for a in job_attempts(settings, running["id"])] == [AttemptStatus.CANCELLED]


def test_cancelling_a_running_job_stops_it_and_frees_its_slot(
    client: FlaskClient, owner: Account, settings: Settings, start_worker: Start
) -> None:
    queue = create_queue(client, owner.headers, "cancel-running")
    worker = start_worker("-c", "1")
    hung = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 600})
    _wait_status(client, owner, hung, "processing", worker)
    response = client.post(f"/api/v1/jobs/{hung['id']}/cancel", headers=owner.headers)
    assert response.status_code == 204, response.json
    assert _status(client, owner, hung) == "cancelled"
    attempts = job_attempts(settings, hung["id"])
    assert [(a.status, a.error) for a in attempts] == [
        (AttemptStatus.CANCELLED, "Cancelled while running")
    ]
    after = submit_job(client, owner.headers, queue, job_type="echo", payload={"after": True})
    _wait_status(client, owner, after, "succeeded", worker)
    wait_for(lambda: _unacked(settings) == 0, 30, "the cancelled attempt's message was not acked")
    assert _status(client, owner, hung) == "cancelled"
    assert len(job_attempts(settings, hung["id"])) == 1, "the killed attempt was redelivered"
