"""Fixtures of the service tests: a session, actors and a recording publisher; no Flask.

- ``session``: a session on the test database, rolled back after the test
  (services flush, never commit: what a test commits itself stays, and the
  ``database_url`` fixture empties every table afterwards).
- ``org``: a registered organization (its owner and default project).
- ``actor``: the owner's ``Actor``; ``actor_as(role)``: a member's.
- ``published``: the outbox's publisher for the test, recording what would be sent.
- ``store``: a queue-policy store on the test's Redis, installed as a worker's runtime does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from app.db import session_factory
from app.models import Role
from app.redis_server import RedisProcess
from app.services import outbox, policies
from app.services.actors import Actor
from app.services.auth import Registration
from app.services.policies import PolicyStore
from tests.support import factories
from tests.support.factories import RecordingPublisher


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    """A session on the test database; rolled back and closed after the test."""
    opened = session_factory(database_url)()
    yield opened
    opened.rollback()
    opened.close()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> RecordingPublisher:
    """Install a recording publisher as the outbox's port for this test."""
    publisher = RecordingPublisher()
    monkeypatch.setattr(outbox, "_publisher", publisher)
    return publisher


@pytest.fixture
def store(redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[PolicyStore]:
    """A policy store on the test's Redis, installed as a worker's runtime does."""
    installed = policies.PolicyStore.from_url(redis_server.url)
    monkeypatch.setattr(policies, "_store", installed)
    yield installed
    installed.client.close()


@pytest.fixture
def org(session: Session, published: RecordingPublisher) -> Registration:
    """A registered organization."""
    return factories.register(session)


@pytest.fixture
def actor(org: Registration) -> Actor:
    """The organization owner's actor."""
    return factories.actor_of(org.user)


@pytest.fixture
def actor_as(session: Session, org: Registration) -> Callable[[Role], Actor]:
    """The actor of a new member of ``org`` with a given role."""

    def make(role: Role) -> Actor:
        return factories.actor_of(factories.member(session, org.organization.id, role))

    return make
