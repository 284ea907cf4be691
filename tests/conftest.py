"""Fixtures that start real services: a private Redis, SQLite and PostgreSQL.

- ``redis_server``: a private ``redis-server`` for the whole session.
- ``database_url``: parametrized over SQLite (a file under the session's tmp
  dir) and PostgreSQL (``TEST_POSTGRES_URL``, skipped when unset; ``.ci/run``
  sets it).  Both are migrated once with Alembic; every table is emptied after
  each test.  Under pytest-xdist each worker has a database of its own on that
  server (``<database>_gw0``, ...), created on first use.
- ``settings`` / ``app`` / ``client``: a TaskForge app on those services;
  ``runtime``: the app's shared collaborators (token service, broker probe, …).
- ``auth``: registers organizations and users and hands back their headers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text

from app.api import context
from app.api.app import create_app
from app.config import Settings, load_settings
from app.db import get_engine
from app.migrate import upgrade
from app.models import Base
from app.redis_server import RedisProcess, free_port, start_redis
from app.runtime import Runtime
from app.services import actor_epoch
from tests.support import xdist_groups
from tests.support.workers import WorkerProcess, stop_all

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
PASSWORD = "correct horse battery"
METRICS_TOKEN = "test-metrics-token"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A private Redis for the test session."""
    server = start_redis(free_port(), tmp_path_factory.mktemp("redis"))
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _flush_redis(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "redis_server" in request.fixturenames:
        server: RedisProcess = request.getfixturevalue("redis_server")
        if server.is_running():
            with redis.Redis.from_url(server.url) as client:
                client.flushdb()


@pytest.fixture(autouse=True)
def _forget_actor_epoch_store() -> Iterator[None]:
    # An app built by one test installs its Redis for actor changes process-wide;
    # the next test must not reach a Redis that test stopped.
    yield
    actor_epoch.install(None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run real-worker tests once, on SQLite; mark the ``serial`` tests.

    Real-worker tests exercise processes, brokers and timing; the SQL they run is
    covered on both backends by tests/api, tests/tasks and tests/grpc.  Running them
    twice would double the suite's slowest part for no new coverage.  The ``serial``
    mark follows tests/support/xdist_groups.py, so ``-m serial`` selects that group.
    Under pytest-xdist the ``slow`` tests are collected first.
    """
    skip = pytest.mark.skip(reason="real-worker tests run on the SQLite backend only")
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        if backend == "postgres" and item.get_closest_marker("real_workers"):
            item.add_marker(skip)
        if xdist_groups.group_of(item.nodeid) == "serial":
            item.add_marker(pytest.mark.serial)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The scheduler hands tests out in this order: slow ones first, so that no
        # worker is left running a long one alone at the end.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With ``--dist loadgroup``, group tests as tests/support/xdist_groups.py says."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return xdist_groups.scheduler(config, log)


def _backends() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgres",
            id="postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="TEST_POSTGRES_URL is not set"),
            ],
        ),
    ]


@pytest.fixture(scope="session")
def _migrated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    done: dict[str, str] = {}

    def migrated(backend: str) -> str:
        if backend not in done:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'taskforge.db'}"
            else:
                assert POSTGRES_URL
                url = _worker_database(POSTGRES_URL)
                _reset_postgres(url)
            upgrade(url)
            done[backend] = url
        return done[backend]

    return migrated


def _worker_database(url: str) -> str:
    """The URL of this xdist worker's own database on ``url``'s server, made if missing.

    Every worker drops and recreates its schema at start and empties the tables after
    each test, so workers sharing one database would wipe each other's rows.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _reset_postgres(url: str) -> None:
    with get_engine(url).begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, _migrated: Callable[[str], str]) -> Iterator[str]:
    """A migrated, empty database; emptied again after the test."""
    url = _migrated(request.param)
    yield url
    with get_engine(url).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def settings(database_url: str, redis_server: RedisProcess) -> Settings:
    """Settings pointing at the test services, with generous rate limits."""
    return load_settings(
        database_url=database_url,
        redis_url=redis_server.url,
        rate_limit_default="100000 per minute",
        rate_limit_login="100000 per minute",
        rate_limit_register="100000 per hour",
        metrics_token=METRICS_TOKEN,
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    """The TaskForge Flask app on the test services."""
    return create_app(settings)


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    """The runtime ``app`` was built on."""
    with app.app_context():
        return context.runtime()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


@dataclass
class Account:
    """A registered user with tokens and request headers."""

    email: str
    user_id: str
    organization_id: str
    access_token: str
    refresh_token: str
    headers: dict[str, str] = field(default_factory=dict)


class Auth:
    """Register organizations and add members through the API itself."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.json
        return response.json  # type: ignore[no-any-return]

    def _account(self, email: str, user_id: str, organization_id: str) -> Account:
        tokens = self.login(email)
        return Account(
            email=email,
            user_id=user_id,
            organization_id=organization_id,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )

    def register(self, organization_name: str = "Acme") -> Account:
        """A new organization and its owner, logged in."""
        email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
        response = self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "organization_name": organization_name},
        )
        assert response.status_code == 201, response.json
        body = response.json
        return self._account(email, body["user_id"], body["organization_id"])

    def member(self, owner: Account, role: str) -> Account:
        """A new user of ``owner``'s organization with ``role``, logged in."""
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        response = self.client.post(
            f"/api/v1/organizations/{owner.organization_id}/members",
            json={"email": email, "password": PASSWORD, "role": role},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.json
        return self._account(email, response.json["id"], owner.organization_id)


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    """Register organizations and users."""
    return Auth(client)


@pytest.fixture
def owner(auth: Auth) -> Account:
    """The owner of a fresh organization."""
    return auth.register()


@pytest.fixture
def queue(client: FlaskClient, owner: Account) -> dict[str, Any]:
    """A queue in ``owner``'s organization."""
    response = client.post("/api/v1/queues", json={"name": "default-queue"}, headers=owner.headers)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for a test's artefacts (screenshots, logs) under ``test-output/``.

    The folder follows the test's module (``test-output/integration/test_engine/<test>``):
    tests of one name in two modules may run at the same time under pytest-xdist.
    """
    module = Path(request.node.path).relative_to(TESTS_DIR).with_suffix("")
    path = TESTS_DIR.parent / "test-output" / module / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def start_worker(settings: Settings, output_dir: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``celery worker`` processes on the test's services; all stop at teardown."""
    started: list[WorkerProcess] = []

    def start(*extra: str) -> WorkerProcess:
        worker = WorkerProcess(settings, output_dir / f"worker-{len(started)}.log", *extra)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    stop_all(started)
