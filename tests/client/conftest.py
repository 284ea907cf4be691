"""Fixtures of the client tests: a running stack of real processes, and the API in-process.

- ``stack`` (session-scoped): a private Redis, a migrated SQLite file, the API under
  gunicorn, the gRPC server, a Celery worker and the monitor, each a real process on
  free ports.  Tests register their own organizations, so they share it safely.
- ``wsgi_client``: an SDK client of the test's in-process app (httpx's WSGI
  transport), for the error mapping on both database backends.
- ``signup``: registers an organization and logs its owner in, through the SDK.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from app.config import Settings, load_settings
from app.migrate import upgrade
from app.redis_server import free_port, start_redis
from taskforge_client import RetryPolicy, TaskForge
from tests.support.monitor import MonitorProcess
from tests.support.workers import ServiceProcess, WorkerProcess, wait_for

PASSWORD = "correct horse battery"
JWT_SECRET = "client-tests-jwt-secret-0123456789abcdef"
# Quick retries keep failing tests short; the policy itself is tested on its own.
FAST_RETRIES = RetryPolicy(backoff=0.05, max_backoff=0.2)


class ApiProcess(ServiceProcess):
    """The API under gunicorn, as ``make run`` starts it."""

    ready_marker = "Booting worker"

    def __init__(self, settings: Settings, log_path: Path, port: int) -> None:
        argv = [
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "wsgi:app",
        ]
        super().__init__(settings, log_path, argv)
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ``/healthz`` answers."""
        super().wait_ready(timeout)
        wait_for(self._healthy, 30, f"API never answered:\n{self.log()[-3000:]}", interval=0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class GrpcProcess(ServiceProcess):
    """``python -m grpc_service.server`` on a given port."""

    ready_marker = "listening on"

    def __init__(self, settings: Settings, log_path: Path, port: int) -> None:
        super().__init__(
            settings, log_path, ["grpc_service.server"], env={"TASKFORGE_GRPC_PORT": str(port)}
        )
        self.target = f"127.0.0.1:{port}"


@dataclass
class Stack:
    """The running processes and where to reach them."""

    settings: Settings
    api: ApiProcess
    grpc: GrpcProcess
    worker: WorkerProcess
    monitor: MonitorProcess

    @property
    def url(self) -> str:
        return self.api.url

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        return "\n".join(
            f"--- {type(p).__name__}\n{p.log()[-2000:]}"
            for p in (self.api, self.grpc, self.worker, self.monitor)
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system as real processes, shared by the client tests."""
    root = tmp_path_factory.mktemp("stack")
    redis = start_redis(free_port(), root / "redis")
    redis.wait_ready()
    database_url = f"sqlite:///{root / 'taskforge.db'}"
    upgrade(database_url)
    settings = load_settings(database_url=database_url, redis_url=redis.url)
    started: list[ServiceProcess] = []
    try:
        # Each process copies the environment as it starts; the test process's own
        # environment is restored at once, so later tests' settings do not read it.
        with pytest.MonkeyPatch.context() as env:
            for name, value in {
                "JWT_SECRET_KEY": JWT_SECRET,
                "TASKFORGE_VAR_DIR": str(root / "var"),
                "TASKFORGE_RATE_LIMIT": "100000 per minute",
                "TASKFORGE_RATE_LIMIT_LOGIN": "100000 per minute",
                "TASKFORGE_RATE_LIMIT_REGISTER": "100000 per hour",
                # One stream for a whole test: events sent while a client reconnects are
                # lost by design, which would make assertions on them flaky.
                "TASKFORGE_SSE_MAX_SECONDS": "300",
                "TASKFORGE_SSE_KEEPALIVE_SECONDS": "1",
                "TASKFORGE_HEARTBEAT_SECONDS": "2",
            }.items():
                env.setenv(name, value)
            api = ApiProcess(settings, root / "api.log", free_port())
            started.append(api)
            grpc_server = GrpcProcess(settings, root / "grpc.log", free_port())
            started.append(grpc_server)
            worker = WorkerProcess(settings, root / "worker.log", "-c", "2", "-n", "sdk@%h")
            started.append(worker)
            monitor = MonitorProcess(settings, root / "monitor.log")
            started.append(monitor)
        for process in started:
            process.wait_ready()
        yield Stack(settings, api, grpc_server, worker, monitor)
    finally:
        for process in reversed(started):
            process.stop()
        redis.stop()


@dataclass
class Signup:
    """A registered owner: email and the logged-in client."""

    email: str
    organization_id: str
    client: TaskForge


@pytest.fixture
def signup() -> Iterator[Callable[..., Signup]]:
    """Register an organization at a base URL and log its owner in; clients close at teardown."""
    clients: list[TaskForge] = []

    def make(base_url: str, **options: Any) -> Signup:
        client = TaskForge(base_url, **{"retry": FAST_RETRIES, **options})
        clients.append(client)
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        registered = client.auth.register(email, PASSWORD, "Acme")
        client.auth.login(email, PASSWORD)
        return Signup(email, registered.organization_id, client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def wsgi_client(app: Flask, signup: Callable[..., Signup]) -> Signup:
    """An owner of a fresh organization, with an SDK client of the in-process app."""
    return signup("http://testserver", http_transport=httpx.WSGITransport(app=app))
