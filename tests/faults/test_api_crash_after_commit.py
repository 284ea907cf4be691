"""Kill the API process between its commit and its publish: the relay publishes the job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.config import PROJECT_ROOT, Settings
from app.db import session_scope
from app.models import Job, JobStatus
from app.redis_server import free_port
from app.services.outbox import relay_unpublished
from tasks.celery_app import use_broker
from tests.conftest import Account
from tests.support.execution import execute
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a broker that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture
def api_key(client: FlaskClient, owner: Account) -> str:
    """An API key (API keys need no Redis to authenticate, unlike bearer tokens)."""
    scopes = ["queue:read", "job:read", "job:write"]
    response = client.post(
        "/api/v1/api-keys", json={"name": "crash", "scopes": scopes}, headers=owner.headers
    )
    assert response.status_code == 201, response.json
    return response.json["key"]  # type: ignore[no-any-return]


def _post_job(port: int, key: str, queue_id: str, answers: list[int]) -> None:
    body = json.dumps({"queue_id": queue_id, "job_type": "echo", "payload": "survived"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/jobs",
        data=body,
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answers.append(response.status)
    except urllib.error.HTTPError as exc:
        answers.append(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # the server was killed mid-request


def _jobs_in(settings: Settings, queue_id: str) -> list[Job]:
    with session_scope(settings.database_url) as session:
        jobs = session.scalars(select(Job).where(Job.queue_id == uuid.UUID(queue_id))).all()
        session.expunge_all()
        return list(jobs)


def test_api_killed_after_commit_before_publish(
    settings: Settings,
    queue: dict,
    api_key: str,
    black_hole: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": black_hole,
        "TASKFORGE_RATE_LIMIT_ENABLED": "false",
    }
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "120",
            "wsgi:app",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _answers(port), 30, f"API did not start:\n{_tail(tmp_path / 'api.log')}")
        answers: list[int] = []
        client = threading.Thread(
            target=_post_job, args=(port, api_key, queue["id"], answers), daemon=True
        )
        client.start()
        # The row is visible once committed; the publish that follows hangs on the black hole.
        wait_for(lambda: _jobs_in(settings, queue["id"]), 30, "the job was never committed")
        os.killpg(api.pid, signal.SIGKILL)
        api.wait(10)
        client.join(60)
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait(10)
        log.close()

    assert answers == [], "the API answered before it was killed"
    [orphan] = _jobs_in(settings, queue["id"])
    assert (orphan.status, orphan.published_at) == (JobStatus.PENDING, None)
    use_broker(settings.redis_url)
    assert relay_unpublished(settings.database_url, grace=timedelta(0)) == 1
    assert execute(str(orphan.id), 0, "survivor", settings.database_url) == "succeeded"
    [done] = _jobs_in(settings, queue["id"])
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, "survived")


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
