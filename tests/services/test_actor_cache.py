"""The actor cache and the epoch that ends it (``actor_cache``, ``actor_epoch``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.errors import Unavailable
from app.models import ApiKey, Role, User, utcnow
from app.redis_server import RedisProcess, free_port
from app.services import actor_epoch
from app.services.actor_cache import ActorCache, Load
from app.services.actor_epoch import EPOCH_KEY
from app.services.actors import Actor
from app.services.apikeys import create_api_key
from app.services.auth import Registration
from app.services.organizations import update_member_role
from tests.support import factories


@pytest.fixture
def client(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    """A client of the test Redis, installed as the process's epoch store."""
    connected = redis.Redis.from_url(redis_server.url)
    actor_epoch.install(connected)
    yield connected
    actor_epoch.install(None)
    connected.close()


def _loader(actor: Actor, calls: list[int], expires: datetime | None = None) -> Load:
    def load() -> tuple[Actor, datetime | None]:
        calls.append(1)
        return actor, expires

    return load


def test_nothing_is_cached_without_an_epoch(client: redis.Redis, actor: Actor) -> None:
    cache, calls = ActorCache(client), list[int]()
    cache.resolve("k", None, _loader(actor, calls))
    cache.resolve("k", None, _loader(actor, calls))
    assert calls == [1, 1]
    assert client.get(EPOCH_KEY) is not None  # started for the next requests


def test_an_entry_serves_its_epoch_only(client: redis.Redis, actor: Actor) -> None:
    cache, calls = ActorCache(client), list[int]()
    first = cache.resolve("k", b"one", _loader(actor, calls))
    assert first == actor
    assert first.epoch == b"one"  # what else the call caches is valid under it
    assert cache.resolve("k", b"one", _loader(actor, calls)) is first
    assert calls == [1]
    cache.resolve("k", b"two", _loader(actor, calls))
    assert calls == [1, 1]


def test_an_expired_api_key_is_not_served_from_the_cache(client: redis.Redis, actor: Actor) -> None:
    cache, calls = ActorCache(client), list[int]()
    expired = utcnow() - timedelta(seconds=1)
    cache.resolve("k", b"one", _loader(actor, calls, expired))
    cache.resolve("k", b"one", _loader(actor, calls, expired))
    assert calls == [1, 1]


def test_a_role_change_replaces_the_epoch_before_and_after_its_commit(
    client: redis.Redis, session: Session, org: Registration, actor: Actor
) -> None:
    member = factories.member(session, org.organization.id, Role.MEMBER)
    session.commit()
    seen = [client.get(EPOCH_KEY)]
    update_member_role(
        session,
        actor=actor,
        organization_id=org.organization.id,
        user_id=member.id,
        role=Role.VIEWER,
    )
    seen.append(client.get(EPOCH_KEY))
    session.commit()
    seen.append(client.get(EPOCH_KEY))
    assert len(set(seen)) == 3


def test_a_statement_on_users_through_any_session_replaces_the_epoch(
    client: redis.Redis, session: Session, org: Registration
) -> None:
    before = client.get(EPOCH_KEY)
    session.execute(update(User).where(User.id == org.user.id).values(is_active=False))
    assert client.get(EPOCH_KEY) != before


def test_recording_an_api_keys_use_keeps_the_epoch(
    client: redis.Redis, session: Session, actor: Actor
) -> None:
    created = create_api_key(session, actor=actor, name="ci", scopes=["queue:read"])
    session.commit()
    before = client.get(EPOCH_KEY)
    created.api_key.last_used_at = utcnow()
    session.commit()
    assert client.get(EPOCH_KEY) == before
    session.execute(update(ApiKey).values(revoked_at=utcnow()))
    assert client.get(EPOCH_KEY) != before


def test_a_change_is_refused_when_the_epoch_cannot_be_replaced(
    session: Session, org: Registration, actor: Actor
) -> None:
    member = factories.member(session, org.organization.id, Role.MEMBER)
    session.commit()
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    actor_epoch.install(down)
    try:
        with pytest.raises(Unavailable):
            update_member_role(
                session,
                actor=actor,
                organization_id=org.organization.id,
                user_id=member.id,
                role=Role.VIEWER,
            )
    finally:
        actor_epoch.install(None)
    session.rollback()
    stored = session.get(User, member.id, populate_existing=True)
    assert stored is not None and stored.role is Role.MEMBER
