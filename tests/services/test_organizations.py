"""The actor's organization and its members: settings, roles, the last owner."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from app.models import Role
from app.services import organizations
from app.services.actors import Actor
from app.services.auth import Registration
from tests.support import factories


def test_the_rate_limit_setting_is_checked_for_every_edge(
    session: Session, org: Registration, actor: Actor
) -> None:
    org_id = org.organization.id
    updated = organizations.update_organization(
        session, actor=actor, organization_id=org_id, settings={"rate_limit": "600 per minute"}
    )
    assert updated.settings == {"rate_limit": "600 per minute"}
    with pytest.raises(ValidationFailed, match="rate_limit"):
        organizations.update_organization(
            session, actor=actor, organization_id=org_id, settings={"rate_limit": "lots"}
        )


def test_another_organization_does_not_exist(session: Session, actor: Actor) -> None:
    other = factories.register(session, "Other")
    with pytest.raises(NotFound):
        organizations.get_organization(session, actor=actor, organization_id=other.organization.id)


def test_only_an_owner_grants_the_owner_role(
    session: Session, org: Registration, actor_as: Callable[[Role], Actor]
) -> None:
    admin = actor_as(Role.ADMIN)
    with pytest.raises(PermissionDenied):
        organizations.add_member(
            session,
            actor=admin,
            organization_id=org.organization.id,
            email="new@example.com",
            password=factories.PASSWORD,
            role=Role.OWNER,
        )


def test_the_last_owner_is_not_demoted_and_nobody_removes_themselves(
    session: Session, org: Registration, actor: Actor
) -> None:
    org_id, user_id = org.organization.id, org.user.id
    with pytest.raises(Conflict, match="last owner"):
        organizations.update_member_role(
            session, actor=actor, organization_id=org_id, user_id=user_id, role=Role.ADMIN
        )
    with pytest.raises(Conflict, match="yourself"):
        organizations.remove_member(session, actor=actor, organization_id=org_id, user_id=user_id)
