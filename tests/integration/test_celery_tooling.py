"""Stock Celery tools, with no TaskForge configuration, see TaskForge workers and jobs.

The tools run as subprocesses on a bare Celery app (``-A bare``: ``Celery()`` and
nothing else) and ``--broker``, as an operator who only knows the broker's URL
would start them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from app.redis_server import free_port
from tests.conftest import Account
from tests.support.api import submit_job
from tests.support.workers import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., WorkerProcess]
TOOL_TIMEOUT = 60


@pytest.fixture
def bare_app(tmp_path: Path) -> Path:
    """A folder holding ``bare.py``, a Celery app without any configuration."""
    (tmp_path / "bare.py").write_text("from celery import Celery\n\napp = Celery()\n")
    return tmp_path


def _tool_env(bare_app: Path) -> dict[str, str]:
    # No TaskForge module on the path, no Celery settings from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY", "TASKFORGE"))}
    env["PYTHONPATH"] = str(bare_app)
    return env


def _celery(bare_app: Path, settings: Settings, *argv: str) -> str:
    """Run the stock ``celery`` command on the bare app; return its output."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "bare", f"--broker={settings.redis_url}", *argv],
        cwd=bare_app,
        env=_tool_env(bare_app),
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )
    return done.stdout + done.stderr


@pytest.fixture
def worker_name(start_worker: Start) -> str:
    """Start a TaskForge worker (prefork, one process) and return its nodename."""
    name = f"tooling-{uuid.uuid4().hex[:8]}@localhost"
    start_worker("-n", name, "-c", "1")
    return name


def test_celery_inspect_and_status_see_the_worker_and_its_queues(
    client: FlaskClient,
    owner: Account,
    queue: dict[str, Any],
    settings: Settings,
    bare_app: Path,
    worker_name: str,
) -> None:
    ping = _celery(bare_app, settings, "inspect", "ping", "-t", "5", "-j")
    assert json.loads(ping.splitlines()[-1]) == {worker_name: {"ok": "pong"}}, ping
    status = _celery(bare_app, settings, "status", "-t", "5")
    assert worker_name in status and "1 node online" in status, status
    wait_for(
        lambda: f"tf.{queue['id']}" in _celery(bare_app, settings, "inspect", "active_queues"),
        30,
        "inspect active_queues never listed the TaskForge queue",
    )
    job = submit_job(client, owner.headers, queue, job_type="sleep", payload={"seconds": 30})
    wait_for(
        lambda: f"{job['id']}:0" in _celery(bare_app, settings, "inspect", "active", "-t", "5"),
        30,
        "inspect active never showed the running job's task",
    )
    # Cancelling a running job terminates it, so the worker stops at once, not after 30 s.
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers).status_code == 204


def test_flower_with_only_a_broker_sees_the_worker(
    settings: Settings, bare_app: Path, worker_name: str, output_dir: Path
) -> None:
    port = free_port()
    env = {**_tool_env(bare_app), "FLOWER_UNAUTHENTICATED_API": "true"}
    log = (output_dir / "flower.log").open("wb")
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bare",
            f"--broker={settings.redis_url}",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
        ],
        cwd=bare_app,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        seen: dict[str, Any] = {}

        def workers() -> bool:
            url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    seen.update(json.load(response))
            except OSError:
                return False
            return bool(seen.get(worker_name, {}).get("active_queues"))

        wait_for(workers, 60, f"Flower never saw {worker_name}: {seen}", interval=1)
        queues = {q["name"] for q in seen[worker_name]["active_queues"]}
        assert "taskforge.internal" in queues
    finally:
        flower.terminate()
        try:
            flower.wait(20)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait(20)
        log.close()
