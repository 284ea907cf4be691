"""Every process role, started as ``taskforge ROLE``: it answers its health check and
stops cleanly on SIGTERM within its timeout; a stopping worker's jobs are not lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask.testing import FlaskClient
from sqlalchemy import text

from app.config import PROJECT_ROOT, Settings
from app.db import get_engine
from app.migrate import alembic_config
from app.redis_server import free_port
from app.services.leases import SHUTDOWN_ERROR
from grpc_service.server import GRACE_SECONDS
from tests.conftest import Account
from tests.deploy.conftest import RoleProcess
from tests.support.api import job_attempts
from tests.support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.real_workers]

Start = Callable[..., RoleProcess]
# What a process logs once it froze its start-up objects (app.heap).
FROZEN = "start-up objects frozen; full collections skip them"


def _bind() -> str:
    return f"127.0.0.1:{free_port()}"


def test_api_answers_its_health_checks_and_stops_on_sigterm(start_role: Start) -> None:
    api = start_role(
        "api",
        TASKFORGE_HTTP_BIND=_bind(),
        TASKFORGE_HTTP_WORKERS="1",
        TASKFORGE_HTTP_GRACEFUL_SECONDS="5",
    )
    wait_for(api.healthy, 60, f"the api never became ready:\n{api.log()[-3000:]}", interval=0.5)
    assert "answered 200" in api.health("--live").stdout
    assert FROZEN in api.log(), api.log()[-3000:]
    assert api.terminate(timeout=5 + 10) == 0, api.log()[-3000:]
    failed = api.health()
    assert failed.returncode == 1
    assert "did not answer" in failed.stderr


def test_grpc_answers_health_and_stops_on_sigterm(start_role: Start) -> None:
    grpc = start_role("grpc", TASKFORGE_GRPC_BIND=_bind())
    wait_for(grpc.healthy, 60, f"grpc never served:\n{grpc.log()[-3000:]}", interval=0.5)
    assert "SERVING" in grpc.health().stdout
    assert FROZEN in grpc.log(), grpc.log()[-3000:]
    assert grpc.terminate(timeout=GRACE_SECONDS + 10) == 0, grpc.log()[-3000:]
    assert "gRPC server stopped" in grpc.log()
    assert grpc.health("--timeout", "1").returncode == 1


def test_monitor_answers_health_and_stops_on_sigterm(start_role: Start) -> None:
    monitor = start_role("monitor", TASKFORGE_MONITOR_BIND=_bind())
    wait_for(monitor.healthy, 60, f"monitor never ready:\n{monitor.log()[-3000:]}", interval=0.5)
    assert "answered 200" in monitor.health("--live").stdout
    assert FROZEN in monitor.log(), monitor.log()[-3000:]
    assert monitor.terminate(timeout=15) == 0, monitor.log()[-3000:]
    assert "monitor: stopped" in monitor.log()
    assert monitor.health().returncode == 1


def test_beat_proves_each_tick_and_stops_on_sigterm(start_role: Start) -> None:
    beat = start_role("beat")
    wait_for(beat.healthy, 60, f"beat never ticked:\n{beat.log()[-3000:]}", interval=0.5)
    assert beat.terminate(timeout=15) == 0, beat.log()[-3000:]
    stopped = beat.health()
    assert stopped.returncode == 1
    assert "beat is not running" in stopped.stderr


def test_a_killed_beat_fails_its_check_once_its_last_tick_is_old(start_role: Start) -> None:
    beat = start_role("beat")
    wait_for(beat.healthy, 60, f"beat never ticked:\n{beat.log()[-3000:]}", interval=0.5)
    beat.process.send_signal(signal.SIGKILL)
    beat.process.wait(10)
    # The file stays behind; its age gives the death away.
    wait_for(lambda: beat.health("--max-age", "2").returncode == 1, 30, "stale tick passed")
    assert "last tick was" in beat.health("--max-age", "2").stderr


def _job(client: FlaskClient, owner: Account, job_id: str) -> dict:
    response = client.get(f"/api/v1/jobs/{job_id}", headers=owner.headers)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def _submit_sleep(client: FlaskClient, owner: Account, queue: dict, seconds: float) -> str:
    response = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "sleep", "payload": {"seconds": seconds}},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def _worker_env(name: str, soft_shutdown: int) -> dict[str, str]:
    # A lease far longer than the test: only the hand-back can free the job in time.
    return {
        "TASKFORGE_WORKER_NAME": f"{name}@%h",
        "TASKFORGE_WORKER_CONCURRENCY": "1",
        "TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS": str(soft_shutdown),
        "TASKFORGE_LEASE_SECONDS": "600",
    }


def test_a_stopping_worker_hands_its_running_job_back(
    start_role: Start, client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    first = start_role("worker", **_worker_env("first", soft_shutdown=2))
    wait_for(first.healthy, 60, f"worker never answered ping:\n{first.log()[-3000:]}", 0.5)
    job_id = _submit_sleep(client, owner, queue, seconds=8)
    wait_for(lambda: _job(client, owner, job_id)["status"] == "processing", 30, "never started")

    assert first.terminate(timeout=2 + 20) == 0, first.log()[-3000:]
    # Handed back as the worker stopped: waiting for its next attempt, not leased.
    assert _job(client, owner, job_id)["status"] == "pending", first.log()[-3000:]
    assert first.health("--timeout", "2").returncode == 1

    second = start_role("worker", **_worker_env("second", soft_shutdown=2))
    wait_for(
        lambda: _job(client, owner, job_id)["status"] == "succeeded",
        60,
        f"the job never ran again:\n{second.log()[-3000:]}",
    )
    attempts = job_attempts(settings, job_id)
    assert [(a.status, a.worker_name.split("@")[0]) for a in attempts] == [
        ("lost", "first"),
        ("succeeded", "second"),
    ]
    assert attempts[0].error == SHUTDOWN_ERROR


def test_a_stopping_worker_finishes_a_job_that_ends_within_its_soft_shutdown(
    start_role: Start, client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    worker = start_role("worker", **_worker_env("finisher", soft_shutdown=6))
    wait_for(worker.healthy, 60, f"worker never answered ping:\n{worker.log()[-3000:]}", 0.5)
    job_id = _submit_sleep(client, owner, queue, seconds=1)
    wait_for(lambda: _job(client, owner, job_id)["status"] == "processing", 30, "never started")

    assert worker.terminate(timeout=6 + 20) == 0, worker.log()[-3000:]
    job = _job(client, owner, job_id)
    assert (job["status"], job["attempt_count"]) == ("succeeded", 1)
    assert [a.status for a in job_attempts(settings, job_id)] == ["succeeded"]


def test_migrate_brings_a_fresh_database_to_head_and_db_upgrade_is_its_alias(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "DATABASE_URL": url, "TASKFORGE_VAR_DIR": str(tmp_path / "var")}
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    for command in (["migrate"], ["db", "upgrade"]):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        with get_engine(url).connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
            )
