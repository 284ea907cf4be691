"""A worker's scope from its environment, and the consume command it answers."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from app.models import WorkerType
from tasks.worker_commands import AUTOMATIC, DRAINING, scope_from_env, taskforge_consume


def test_the_scope_comes_from_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_WORKER_ORGANIZATION", raising=False)
    monkeypatch.delenv("TASKFORGE_WORKER_TYPE", raising=False)
    assert scope_from_env().organization_id is None
    org = uuid.uuid4()
    monkeypatch.setenv("TASKFORGE_WORKER_ORGANIZATION", str(org))
    monkeypatch.setenv("TASKFORGE_WORKER_TYPE", "specialized_gpu")
    scope = scope_from_env()
    assert (scope.organization_id, scope.worker_type) == (org, WorkerType.SPECIALIZED_GPU)


class _Consumer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def call_soon(self, *args: Any) -> None:
        self.calls.append(args)

    def add_task_queue(self, name: str) -> None:
        """What call_soon would run."""


def test_a_new_queue_is_consumed_only_within_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_WORKER_ORGANIZATION", raising=False)
    monkeypatch.setenv("TASKFORGE_WORKER_TYPE", "general")
    consumer = _Consumer()
    state = SimpleNamespace(consumer=consumer)
    AUTOMATIC.set()
    try:
        org = str(uuid.uuid4())
        reply = taskforge_consume(state, "tf.a", org, "specialized_gpu")
        assert "outside" in reply["ok"] and consumer.calls == []
        assert taskforge_consume(state, "tf.b", org, "") == {"ok": "add consumer tf.b"}
        assert consumer.calls == [(consumer.add_task_queue, "tf.b")]
    finally:
        AUTOMATIC.clear()
    assert not DRAINING.is_set()
