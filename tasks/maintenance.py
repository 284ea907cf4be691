"""Periodic tasks driven by Celery beat."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import exists, or_, select

from app.config import load_settings
from app.db import session_scope
from app.models import Job, JobStatus, Queue, utcnow
from app.services.dispatch import Dispatch
from tasks.celery_app import app
from tasks.dispatch import BROKER_ERRORS, ETA_HORIZON, mark_published, send

logger = logging.getLogger(__name__)

RELAY_BATCH = 500
# A job committed less than this long ago may still be mid-publish by the API.
RELAY_GRACE = timedelta(seconds=5)


def relay_unpublished(database_url: str, *, grace: timedelta = RELAY_GRACE) -> int:
    """Publish jobs whose message never left (crash, broker outage, far-future schedule)."""
    now = utcnow()
    active_queue = exists().where(Queue.id == Job.queue_id, Queue.is_active.is_(True))
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job.id, Job.queue_id, Job.attempt_count, Job.priority, Job.scheduled_for)
            .where(
                Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                Job.published_at.is_(None),
                Job.updated_at <= now - grace,
                or_(Job.scheduled_for.is_(None), Job.scheduled_for <= now + ETA_HORIZON),
                active_queue,
            )
            .order_by(Job.priority.desc(), Job.created_at)
            .limit(RELAY_BATCH)
        ).all()
    items = [
        Dispatch(
            job_id=row.id,
            queue_id=row.queue_id,
            attempt=row.attempt_count,
            priority=row.priority,
            eta=row.scheduled_for if row.scheduled_for and row.scheduled_for > now else None,
        )
        for row in rows
    ]
    if not items:
        return 0
    try:
        sent = send(items)
    except BROKER_ERRORS:
        logger.warning("relay: broker unavailable; %d job(s) wait", len(items))
        return 0
    mark_published(database_url, sent)
    return len(sent)


@app.task(name="taskforge.relay", ignore_result=True)
def relay() -> int:
    """Publish unpublished due jobs; runs every few seconds from beat."""
    return relay_unpublished(load_settings().database_url)
