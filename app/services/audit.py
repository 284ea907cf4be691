"""The audit trail: record operator actions with their change, list them per organization."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AuditEvent, utcnow
from app.services.actors import Actor, Permission
from app.services.pagination import Page, paginate
from app.services.validation import check_datetime, parse_uuid_field


class AuditAction(enum.StrEnum):
    """What an audit event records."""

    QUEUE_PAUSE = "queue.pause"
    QUEUE_RESUME = "queue.resume"
    QUEUE_PURGE = "queue.purge"
    REDRIVE = "dead_letters.redrive"
    # Written by the redrive watch, not by a person: no user, no key.
    REDRIVE_HALTED = "dead_letters.redrive_halted"
    BULK_RETRY = "jobs.bulk_retry"
    BULK_CANCEL = "jobs.bulk_cancel"
    POLICY_CHANGE = "queue.policy_change"


def record(
    session: Session,
    *,
    actor: Actor | None,
    organization_id: uuid.UUID,
    action: AuditAction,
    target_type: str,
    target_id: uuid.UUID | None,
    count: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session's transaction (it commits with the change)."""
    event = AuditEvent(
        id=uuid.uuid4(),
        organization_id=organization_id,
        created_at=utcnow(),
        user_id=actor.user_id if actor else None,
        api_key_id=actor.api_key_id if actor else None,
        action=action.value,
        target_type=target_type,
        target_id=target_id,
        count=count,
        details=details or {},
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    *,
    actor: Actor,
    page: int,
    limit: int,
    action: AuditAction | None = None,
    target_id: str | uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEvent]:
    """List the organization's audit events newest first (``ix_audit_events_org_*``)."""
    actor.require(Permission.ORG_ADMIN)
    query = select(AuditEvent).where(AuditEvent.organization_id == actor.organization_id)
    if action is not None:
        query = query.where(AuditEvent.action == action.value)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == parse_uuid_field(target_id, "target_id"))
    if since is not None:
        query = query.where(AuditEvent.created_at >= check_datetime(since, "since"))
    if until is not None:
        query = query.where(AuditEvent.created_at < check_datetime(until, "until"))
    query = query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    return paginate(session, query, page=page, limit=limit)
