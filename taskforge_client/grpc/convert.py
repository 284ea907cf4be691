"""Proto messages ↔ the client's models (the same dataclasses the REST client returns)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2

from taskforge_client.grpc._gen import job_queue_pb2 as pb
from taskforge_client.models import Job, JobStatus, Page, Queue, QueueStats

MAX_EXACT_INT = 2**53


def to_value(obj: Any) -> struct_pb2.Value:
    """A JSON-compatible Python value as a ``google.protobuf.Value``."""
    return json_format.ParseDict(obj, struct_pb2.Value())


def _exact(obj: Any) -> Any:
    """Integral doubles back to ``int`` (a ``Value`` number is a double), recursively."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) <= MAX_EXACT_INT:
        return int(obj)
    if isinstance(obj, dict):
        return {key: _exact(item) for key, item in obj.items()}
    if isinstance(obj, list):
        return [_exact(item) for item in obj]
    return obj


def from_value(message: Any, field: str) -> Any:
    """The JSON in a message's ``Value`` field; None when unset."""
    if not message.HasField(field):
        return None
    return _exact(json_format.MessageToDict(getattr(message, field)))


def from_timestamp(message: Any, field: str) -> datetime | None:
    """The aware UTC datetime in a message's ``Timestamp`` field; None when unset."""
    if not message.HasField(field):
        return None
    moment: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return moment


def job_status(number: int) -> JobStatus:
    """The ``JobStatus`` of a proto enum number."""
    return JobStatus(pb.JobStatus.Name(number).lower())


def status_number(status: JobStatus | str) -> int:
    """The proto enum number of a job status."""
    return int(pb.JobStatus.Value(JobStatus(status).name))


def job(message: pb.Job) -> Job:
    """A job."""
    return Job(
        id=message.id,
        queue_id=message.queue_id,
        job_type=message.job_type,
        payload=from_value(message, "payload"),
        status=job_status(message.status),
        priority=message.priority,
        max_attempts=message.max_attempts,
        attempt_count=message.attempt_count,
        scheduled_for=from_timestamp(message, "scheduled_for"),
        started_at=from_timestamp(message, "started_at"),
        completed_at=from_timestamp(message, "completed_at"),
        created_at=from_timestamp(message, "created_at") or datetime.fromtimestamp(0, UTC),
        updated_at=from_timestamp(message, "updated_at") or datetime.fromtimestamp(0, UTC),
        result=from_value(message, "result"),
        error=message.error or None,
    )


def queue(message: pb.JobQueue) -> Queue:
    """A queue."""
    return Queue(
        id=message.id,
        project_id=message.project_id,
        name=message.name,
        description=message.description or None,
        priority=message.priority,
        settings=from_value(message, "settings") or {},
        is_active=message.is_active,
        created_at=from_timestamp(message, "created_at") or datetime.fromtimestamp(0, UTC),
        updated_at=from_timestamp(message, "updated_at") or datetime.fromtimestamp(0, UTC),
    )


def queue_stats(message: pb.GetQueueStatsResponse) -> QueueStats:
    """A queue's statistics."""
    return QueueStats(
        queue_id=message.queue_id,
        pending_count=message.pending_count,
        scheduled_count=message.scheduled_count,
        processing_count=message.processing_count,
        succeeded_count=message.succeeded_count,
        failed_count=message.failed_count,
        cancelled_count=message.cancelled_count,
        total_count=message.total_count,
        broker_depth=message.broker_depth if message.HasField("broker_depth") else None,
        is_active=message.is_active,
        last_activity=from_timestamp(message, "last_activity"),
        oldest_pending_age_seconds=message.oldest_pending_age_seconds
        if message.HasField("oldest_pending_age_seconds")
        else None,
    )


def page(items: list[Any], message: Any, limit: int) -> Page[Any]:
    """A ``Page`` from a list response's ``total``, ``page`` and ``pages``."""
    return Page(
        items=items,
        page=message.page,
        limit=limit,
        total=message.total,
        pages=message.pages,
        next_after=getattr(message, "next_after", "") or None,
    )
