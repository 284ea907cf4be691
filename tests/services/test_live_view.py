"""The live view: what one organization sees of the monitor's state, and pool control."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.errors import PermissionDenied, ValidationFailed
from app.models import Role
from app.redis_server import RedisProcess
from app.services import live_view
from app.services.actors import Actor
from app.services.live_state import LiveState
from tests.support import factories


@pytest.fixture
def store(redis_server: RedisProcess) -> Iterator[LiveState]:
    """The live state on the test Redis."""
    state = LiveState.from_url(redis_server.url)
    yield state
    state.close()


class Control:
    """A worker control that records the commands it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def pool(self, hostname: str, action: str, n: int) -> dict[str, Any] | None:
        self.sent.append((hostname, action, n))
        return {"ok": "done"}


def test_a_shared_worker_shows_an_organization_only_its_own_queues(
    session: Session, actor: Actor, store: LiveState
) -> None:
    mine = factories.queue(session, actor)
    store.update_worker(
        "shared@h",
        {
            "status": "online",
            "last_heartbeat": repr(time.time()),
            "queues": [mine.celery_queue, "tf.someone-else"],
        },
    )
    [view] = live_view.live_workers(session, actor=actor, store=store)
    assert (view["hostname"], view["queues"], view["id"]) == ("shared@h", [mine.celery_queue], None)
    intruder = factories.actor_of(factories.register(session, "Intruder").user)
    assert live_view.live_workers(session, actor=intruder, store=store) == []


def test_recent_tasks_are_filtered_and_bounded(
    session: Session, actor: Actor, store: LiveState
) -> None:
    with pytest.raises(ValidationFailed):
        live_view.recent_tasks(session, actor=actor, store=store, state="exploded")
    with pytest.raises(ValidationFailed):
        live_view.recent_tasks(
            session, actor=actor, store=store, limit=live_view.TASK_LIMIT_MAX + 1
        )
    assert live_view.recent_tasks(session, actor=actor, store=store) == []


def test_pool_control_reaches_only_the_organizations_own_workers(
    session: Session, actor: Actor, actor_as: Callable[[Role], Actor]
) -> None:
    from app.services.workers import register_worker

    worker = register_worker(session, actor=actor, name="w1")
    worker.hostname = "w1@h"
    session.flush()
    control = Control()
    reply = live_view.control_pool(
        session, actor=actor, hostname="w1@h", action="grow", n=2, control=control
    )
    assert (reply["reply"], control.sent) == ({"ok": "done"}, [("w1@h", "grow", 2)])
    with pytest.raises(PermissionDenied):
        live_view.control_pool(
            session,
            actor=actor_as(Role.MEMBER),
            hostname="w1@h",
            action="grow",
            control=control,
        )
