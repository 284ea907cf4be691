"""The actor epoch: one value in Redis that every change of an actor replaces.

``app.services.actor_cache`` keeps resolved actors per process under the epoch they
were read in, and ``app.services.queue_cache`` the queues that submits name.
Whatever a session changes in what a credential stands for or in where it submits
(a user, an API key, an organization, a queue: an ORM flush or an
``UPDATE``/``DELETE`` statement run through a session, by any service or by hand) calls
:func:`actors_changed`: the epoch is replaced at once (a Redis outage refuses the
change with 503) and again once the session commits, so no cache in any process
serves the old actor to the next request.  Hooking the session rather than each
service means a new code path cannot forget it.  SQL run outside TaskForge (psql)
is seen within ``actor_cache.TTL_SECONDS``.
"""

from __future__ import annotations

import logging
import uuid
from itertools import chain
from typing import Any

import redis
from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from app.errors import Unavailable
from app.models import ApiKey, Organization, Queue, User

logger = logging.getLogger(__name__)

EPOCH_KEY = "taskforge:actor-epoch"
UNAVAILABLE = "The credential store is unavailable; try again shortly"
_CHANGED_KEY = "taskforge.actors-changed"
# A queue is here for the queue cache: a submit resolves its queue under the epoch
# of its actor.  Creating one changes nothing cached; a project with queues cannot
# be deleted, and an organization's deletion replaces the epoch itself.
_ACTOR_MODELS = (User, ApiKey, Organization, Queue)
_ACTOR_TABLES = frozenset(model.__tablename__ for model in _ACTOR_MODELS)
# Written while authenticating (at most once a minute); changes no actor.
_BOOKKEEPING = frozenset({"last_used_at", "updated_at"})

_client: redis.Redis | None = None


def install(client: redis.Redis | None) -> None:
    """Set the Redis where this process replaces the actor epoch when actors change."""
    global _client
    _client = client


def _replace_epoch() -> None:
    if _client is not None:
        _client.set(EPOCH_KEY, uuid.uuid4().hex)


def actors_changed(session: Session) -> None:
    """End every cached actor now and once ``session`` commits; raise when Redis is down."""
    try:
        _replace_epoch()
    except redis.RedisError as exc:
        raise Unavailable(UNAVAILABLE) from exc
    session.info[_CHANGED_KEY] = True


def _changes_an_actor(session: Session, instance: object) -> bool:
    if instance in session.deleted:
        return True
    state = inspect(instance)
    return any(attr.key not in _BOOKKEEPING and attr.history.has_changes() for attr in state.attrs)


@event.listens_for(Session, "before_flush")
def _flush_changes_actors(session: Session, _context: UOWTransaction, _instances: Any) -> None:
    changed = chain(session.dirty, session.deleted)
    if any(
        isinstance(instance, _ACTOR_MODELS) and _changes_an_actor(session, instance)
        for instance in changed
    ):
        actors_changed(session)


@event.listens_for(Session, "do_orm_execute")
def _statement_changes_actors(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in _ACTOR_TABLES:
            actors_changed(state.session)


@event.listens_for(Session, "after_commit")
def _replace_after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED_KEY, False):
        try:
            _replace_epoch()
        except redis.RedisError:
            # The bump before the commit went through; this one only closes a race,
            # and cached actors end within a minute anyway (actor_cache.TTL_SECONDS).
            logger.error("actor epoch not replaced after commit")


@event.listens_for(Session, "after_soft_rollback")
def _forget_change(session: Session, _previous_transaction: object) -> None:
    session.info.pop(_CHANGED_KEY, None)
