"""Fixtures of the monitor tests: the monitor process, Celery control, worker environment.

- ``start_monitor``: starts ``python -m app.monitor`` on the test's services
  (inspecting every second); it stops at teardown.
- ``celery_control``: the test process's Celery app, pointed at the test broker.
- ``worker_env``: sets ``TASKFORGE_*`` variables for the workers started next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from flask import Flask

from app.config import Settings
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
