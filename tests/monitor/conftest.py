"""Fixtures of the monitor tests: the monitor process, Celery control, worker environment.

- ``start_monitor``: starts ``python -m app.monitor`` on the test's services
  (inspecting every second); it stops at teardown.
- ``celery_control``: the test process's Celery app, pointed at the test broker.
- ``worker_env``: sets ``TASKFORGE_*`` variables for the workers started next.
- ``operator``: a platform operator made with ``taskforge operator create``, logged in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.cli import main as cli
from app.config import Settings
from app.db import session_scope
from app.models import User
from tests.conftest import PASSWORD, Account, Auth
from tests.support.monitor import MonitorProcess


@pytest.fixture
def start_monitor(settings: Settings, output_dir: Path) -> Iterator[Callable[[], MonitorProcess]]:
    """Start the monitor process on the test's services; it stops at teardown."""
    started: list[MonitorProcess] = []

    def start() -> MonitorProcess:
        monitor = MonitorProcess(settings, output_dir / "monitor.log")
        started.append(monitor)
        monitor.wait_ready()
        return monitor

    yield start
    for monitor in started:
        monitor.stop()


@pytest.fixture
def celery_control(app: Flask) -> Celery:
    """The Celery app of this process; ``app`` already pointed it at the test broker."""
    from tasks.celery_app import app as celery

    return celery


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set ``TASKFORGE_<NAME>`` variables for workers started afterwards."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"TASKFORGE_{name.upper()}", value)

    return set_env


@pytest.fixture
def operator(client: FlaskClient, auth: Auth, settings: Settings) -> Account:
    """A platform operator made with ``taskforge operator create``, logged in."""
    email = "ops@example.com"
    result = CliRunner().invoke(
        cli,
        ["operator", "create", "--email", email],
        env={"DATABASE_URL": settings.database_url, "TASKFORGE_OPERATOR_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"operator {email} created")
    with session_scope(settings.database_url) as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        assert user.is_operator
        user_id, org_id = str(user.id), str(user.organization_id)
    return auth._account(email, user_id, org_id)
