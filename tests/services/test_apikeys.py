"""API keys: scopes within the creator's, lineage, revocation, one indexed lookup to use one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.errors import NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from app.models import Role
from app.services import apikeys
from app.services.actors import Actor, Permission
from app.services.auth import actor_for_api_key
from tests.support import factories


def test_a_key_acts_with_its_scopes_and_shows_its_secret_once(
    session: Session, actor: Actor
) -> None:
    created = apikeys.create_api_key(session, actor=actor, name="ci", scopes=["job:read"])
    assert created.key.startswith(f"tf_{created.api_key.prefix}_")
    assert created.api_key.key_hash not in created.key
    actor = actor_for_api_key(session, created.key)
    assert actor.permissions == {Permission.JOB_READ}
    assert actor.api_key_id == created.api_key.id


def test_a_key_cannot_hold_more_than_its_creator(
    session: Session, actor_as: Callable[[Role], Actor]
) -> None:
    admin = actor_as(Role.ADMIN)
    key = apikeys.create_api_key(
        session, actor=admin, name="k", scopes=["job:read", "apikey:admin"]
    )
    minted_by_key = actor_for_api_key(session, key.key)
    with pytest.raises(PermissionDenied):
        apikeys.create_api_key(session, actor=minted_by_key, name="k2", scopes=["job:write"])
    with pytest.raises(ValidationFailed):
        apikeys.create_api_key(session, actor=admin, name="k3", scopes=["root"])


def test_revoking_a_key_revokes_what_it_minted(session: Session, actor: Actor) -> None:
    parent = apikeys.create_api_key(
        session, actor=actor, name="parent", scopes=["apikey:admin", "job:read"]
    )
    child = apikeys.create_api_key(
        session, actor=actor_for_api_key(session, parent.key), name="child", scopes=["job:read"]
    )
    apikeys.revoke_api_key(session, actor=actor, api_key_id=parent.api_key.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        actor_for_api_key(session, child.key)


def test_another_organizations_key_is_not_found(session: Session, actor: Actor) -> None:
    key = apikeys.create_api_key(session, actor=actor, name="k", scopes=["job:read"])
    intruder = factories.actor_of(factories.register(session, "Intruder").user)
    with pytest.raises(NotFound):
        apikeys.get_api_key(session, actor=intruder, api_key_id=key.api_key.id)
