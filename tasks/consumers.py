"""Which Celery queues a worker consumes."""

from __future__ import annotations

from sqlalchemy import select

from app.db import session_scope
from app.models import Queue, celery_queue_name


def queues_to_consume(database_url: str) -> list[str]:
    """Celery queue names of every TaskForge queue, paused ones included.

    Paused queues are consumed too: the executor's claim drops their messages
    and the resume re-publishes them, so pause never depends on a broadcast.
    """
    with session_scope(database_url) as session:
        ids = session.scalars(select(Queue.id).order_by(Queue.created_at)).all()
    return [celery_queue_name(queue_id) for queue_id in ids]
