"""The actor's own organization and its members."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from app.models import ApiKey, Organization, Role, User, utcnow
from app.services.actors import Actor, Permission
from app.services.auth import create_user
from app.services.pagination import Page, paginate
from app.services.ratelimit import check_organization_settings
from app.services.validation import check_json_document, check_name, parse_uuid

ORG_SETTINGS_MAX_BYTES = 16 * 1024


def _check_org_id(actor: Actor, organization_id: str | uuid.UUID) -> None:
    if parse_uuid(organization_id, what="Organization") != actor.organization_id:
        raise NotFound("Organization not found")


def get_organization(
    session: Session, *, actor: Actor, organization_id: str | uuid.UUID
) -> Organization:
    """Return the actor's organization; any other id is not found."""
    _check_org_id(actor, organization_id)
    organization = session.get(Organization, actor.organization_id)
    if organization is None:
        raise NotFound("Organization not found")
    return organization


def update_organization(
    session: Session,
    *,
    actor: Actor,
    organization_id: str | uuid.UUID,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Organization:
    """Rename the organization or replace its settings (admins only)."""
    organization = get_organization(session, actor=actor, organization_id=organization_id)
    actor.require(Permission.ORG_ADMIN)
    if name is not None:
        organization.name = check_name(name)
    if settings is not None:
        if not isinstance(settings, dict):
            raise ValidationFailed.field("settings", "Must be an object.")
        check_organization_settings(settings)
        organization.settings = check_json_document(
            settings, "settings", max_bytes=ORG_SETTINGS_MAX_BYTES
        )
    session.flush()
    return organization


def list_members(
    session: Session, *, actor: Actor, organization_id: str | uuid.UUID, page: int, limit: int
) -> Page[User]:
    """List the organization's users, oldest first."""
    _check_org_id(actor, organization_id)
    query = (
        select(User)
        .where(User.organization_id == actor.organization_id)
        .order_by(User.created_at, User.id)
    )
    return paginate(session, query, page=page, limit=limit)


def _check_can_grant(actor: Actor, role: Role) -> None:
    actor.require(Permission.ORG_ADMIN)
    if role is Role.OWNER and actor.role is not Role.OWNER:
        raise PermissionDenied("Only an owner can grant the owner role")


def add_member(
    session: Session,
    *,
    actor: Actor,
    organization_id: str | uuid.UUID,
    email: str,
    password: str,
    role: Role,
) -> User:
    """Create a user in the organization with the given role (admins only)."""
    _check_org_id(actor, organization_id)
    _check_can_grant(actor, role)
    return create_user(
        session, organization_id=actor.organization_id, email=email, password=password, role=role
    )


def _get_member(session: Session, actor: Actor, user_id: str | uuid.UUID) -> User:
    uid = parse_uuid(user_id, what="Member")
    user = session.get(User, uid)
    if user is None or user.organization_id != actor.organization_id:
        raise NotFound("Member not found")
    return user


def _owner_count(session: Session, organization_id: uuid.UUID) -> int:
    query = select(func.count()).where(
        User.organization_id == organization_id, User.role == Role.OWNER
    )
    return int(session.scalar(query) or 0)


def update_member_role(
    session: Session,
    *,
    actor: Actor,
    organization_id: str | uuid.UUID,
    user_id: str | uuid.UUID,
    role: Role,
) -> User:
    """Change a member's role; the last owner keeps theirs."""
    _check_org_id(actor, organization_id)
    user = _get_member(session, actor, user_id)
    _check_can_grant(actor, role)
    if user.role is Role.OWNER and actor.role is not Role.OWNER:
        raise PermissionDenied("Only an owner can change an owner's role")
    demoting_owner = user.role is Role.OWNER and role is not Role.OWNER
    if demoting_owner and _owner_count(session, actor.organization_id) <= 1:
        raise Conflict("The organization's last owner cannot be demoted")
    user.role = role
    session.flush()
    return user


def remove_member(
    session: Session, *, actor: Actor, organization_id: str | uuid.UUID, user_id: str | uuid.UUID
) -> None:
    """Delete a member; nobody removes themselves or the last owner."""
    _check_org_id(actor, organization_id)
    user = _get_member(session, actor, user_id)
    actor.require(Permission.ORG_ADMIN)
    if user.id == actor.user_id:
        raise Conflict("You cannot remove yourself")
    if user.role is Role.OWNER and actor.role is not Role.OWNER:
        raise PermissionDenied("Only an owner can remove an owner")
    # The member's keys would otherwise outlive them with their full scopes.
    session.execute(
        update(ApiKey)
        .where(ApiKey.created_by_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    session.delete(user)
    session.flush()
