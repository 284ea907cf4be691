"""Proto ↔ Python: JSON values, timestamps, enums, resources and request arguments.

``google.protobuf.Value`` numbers are doubles: an integral number within ±2**53
comes back as an ``int``, so JSON integers survive the trip exactly.  Proto3
defaults mean "use the default": see ``proto/job_queue.proto`` for each rule.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from app.errors import ValidationFailed
from app.models import AuditEvent, Job, JobStatus, Queue, Worker, WorkerStatus, WorkerType
from app.services.audit import AuditAction
from app.services.explain import Explanation
from app.services.job_counts import count_fields
from app.services.pagination import DEFAULT_PAGE_SIZE, Page
from app.services.queue_control import DeadLetter, JobFilter, Redrive
from app.services.queues import QueueStats
from grpc_service.gen import job_queue_pb2 as pb

MAX_EXACT_INT = 2**53
QUEUE_FIELDS = ("name", "description", "priority", "settings", "is_active")
E = TypeVar("E", bound=enum.Enum)


def to_value(obj: Any) -> struct_pb2.Value:
    """Convert a JSON-compatible Python value to a ``Value``."""
    value = struct_pb2.Value()
    _fill(value, obj)
    return value


def _fill(value: struct_pb2.Value, obj: Any) -> None:
    if obj is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, int | float):
        try:
            value.number_value = float(obj)
        except OverflowError:  # an integer beyond any double: keep its digits
            value.string_value = str(obj)
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, dict):
        value.struct_value.SetInParent()  # an empty object is still an object
        for key, item in obj.items():
            _fill(value.struct_value.fields[key], item)
    elif isinstance(obj, list | tuple):
        value.list_value.SetInParent()
        for item in obj:
            _fill(value.list_value.values.add(), item)
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON-compatible")


def from_value(value: struct_pb2.Value) -> Any:
    """Convert a ``Value`` to Python; an unset value is ``None``."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        negative_zero = number == 0 and math.copysign(1.0, number) < 0
        if number.is_integer() and abs(number) <= MAX_EXACT_INT and not negative_zero:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: from_value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def optional_value(message: Any, field: str) -> Any:
    """The JSON in a message's ``Value`` field, or ``None`` when it is not set."""
    return from_value(getattr(message, field)) if message.HasField(field) else None


def to_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """Convert an aware datetime to a ``Timestamp`` (``None`` stays unset)."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def from_timestamp(message: Any, field: str) -> datetime | None:
    """The aware UTC datetime in a message's ``Timestamp`` field, or ``None`` when unset."""
    if not message.HasField(field):
        return None
    try:
        return getattr(message, field).ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]
    except (ValueError, OverflowError) as exc:
        raise ValidationFailed.field(field, "Not a valid timestamp.") from exc


def enum_to_proto(member: enum.Enum) -> int:
    """The proto number of a model enum member: its declaration index."""
    return list(type(member)).index(member)


def enum_from_proto(cls: type[E], number: int, field: str) -> E:
    """The model enum member with proto number ``number``."""
    members = list(cls)
    if not 0 <= number < len(members):
        raise ValidationFailed.field(field, f"Unknown value {number}.")
    return members[number]


def _enum_filter(cls: type[E], number: int, explicit: bool, field: str) -> E | None:
    """An enum filter applies when it is not the default (0) or its flag says so."""
    return enum_from_proto(cls, number, field) if number or explicit else None


def job_to_proto(job: Job) -> pb.Job:
    """Render a job."""
    return pb.Job(
        id=str(job.id),
        queue_id=str(job.queue_id),
        job_type=job.job_type,
        payload=to_value(job.payload),
        status=enum_to_proto(job.status),  # type: ignore[arg-type]
        priority=job.priority,
        max_attempts=job.max_attempts,
        attempt_count=job.attempt_count,
        scheduled_for=to_timestamp(job.scheduled_for),
        created_at=to_timestamp(job.created_at),
        updated_at=to_timestamp(job.updated_at),
        completed_at=to_timestamp(job.completed_at),
        result=to_value(job.result),
        error=job.error or "",
        started_at=to_timestamp(job.started_at),
    )


def queue_to_proto(queue: Queue) -> pb.JobQueue:
    """Render a queue."""
    return pb.JobQueue(
        id=str(queue.id),
        project_id=str(queue.project_id),
        name=queue.name,
        description=queue.description or "",
        priority=queue.priority,
        settings=to_value(queue.settings),
        is_active=queue.is_active,
        created_at=to_timestamp(queue.created_at),
        updated_at=to_timestamp(queue.updated_at),
    )


def worker_to_proto(worker: Worker) -> pb.Worker:
    """Render a worker."""
    return pb.Worker(
        id=str(worker.id),
        project_id=str(worker.project_id) if worker.project_id else "",
        name=worker.name,
        worker_type=enum_to_proto(worker.worker_type),  # type: ignore[arg-type]
        status=enum_to_proto(worker.status),  # type: ignore[arg-type]
        capabilities=to_value(worker.capabilities),
        max_concurrent_jobs=worker.max_concurrent_jobs,
        last_heartbeat=to_timestamp(worker.last_heartbeat),
        registered_at=to_timestamp(worker.registered_at),
        drain_mode=worker.drain_mode,
        hostname=worker.hostname or "",
        queues=list(worker.queues or ()),
        job_types=list(worker.job_types or ()),
        job_types_advertised=worker.job_types is not None,
    )


def job_counts_to_proto(counts: dict[JobStatus, int]) -> pb.GetJobCountsResponse:
    """Render an organization's job counts per status."""
    return pb.GetJobCountsResponse(**count_fields(counts))


def queue_stats_to_proto(stats: QueueStats) -> pb.GetQueueStatsResponse:
    """Render a queue's statistics."""
    return pb.GetQueueStatsResponse(
        queue_id=str(stats.queue_id),
        **count_fields(stats.counts),
        is_active=stats.is_active,
        last_activity=to_timestamp(stats.last_activity),
        broker_depth=stats.broker_depth,
        oldest_pending_age_seconds=stats.oldest_pending_age_seconds,
    )


def page_fields(page: Page[Any]) -> dict[str, int]:
    """The ``total``, ``page`` and ``pages`` of a list response."""
    return {"total": page.total, "page": page.page, "pages": page.pages}


def page_args(request: Any) -> dict[str, int]:
    """Page arguments of a list request: page 0 is the first, limit 0 the default size."""
    return {"page": request.page or 1, "limit": request.limit or DEFAULT_PAGE_SIZE}


def submit_job_args(request: pb.SubmitJobRequest) -> dict[str, Any]:
    """``submit_job`` keywords; empty strings and zeros mean "not given"."""
    return {
        "job_type": request.job_type,
        "payload": optional_value(request, "payload"),
        "queue_id": request.queue_id or None,
        "queue_name": request.queue_name or None,
        "priority": request.priority,
        "max_attempts": request.max_attempts or None,
        "scheduled_for": from_timestamp(request, "scheduled_for"),
        "idempotency_key": request.idempotency_key or None,
    }


def list_jobs_args(request: pb.ListJobsRequest) -> dict[str, Any]:
    """``list_jobs`` keywords."""
    return {
        **page_args(request),
        "queue_id": request.queue_id or None,
        "status": _enum_filter(JobStatus, request.status, request.filter_status, "status"),
        "after": request.after or None,
    }


def create_queue_args(request: pb.CreateQueueRequest) -> dict[str, Any]:
    """``create_queue`` keywords; an empty project_id means the default project."""
    return {
        "name": request.name,
        "description": request.description or None,
        "priority": request.priority,
        "settings": optional_value(request, "settings"),
        "project_id": request.project_id or None,
    }


def update_queue_args(request: pb.UpdateQueueRequest) -> dict[str, Any]:
    """``update_queue`` keywords: the masked fields, else the non-empty ones and is_active."""
    paths = list(request.update_mask.paths)
    if not paths:
        given = {
            "name": request.name or None,
            "description": request.description or None,
            "priority": request.priority or None,
            "settings": optional_value(request, "settings"),
        }
        return {key: value for key, value in given.items() if value is not None} | {
            "is_active": request.is_active
        }
    unknown = sorted(set(paths) - set(QUEUE_FIELDS))
    if unknown:
        raise ValidationFailed.field("update_mask", f"Unknown field(s): {', '.join(unknown)}.")
    settings = optional_value(request, "settings")
    values = {
        "name": request.name,
        "description": request.description or None,
        "priority": request.priority,
        "settings": {} if settings is None else settings,
        "is_active": request.is_active,
    }
    return {path: values[path] for path in paths}


def list_queues_args(request: pb.ListQueuesRequest) -> dict[str, Any]:
    """``list_queues`` keywords."""
    return {**page_args(request), "project_id": request.project_id or None}


def register_worker_args(request: pb.RegisterWorkerRequest) -> dict[str, Any]:
    """``register_worker`` keywords; max_concurrent_jobs 0 means the default."""
    args: dict[str, Any] = {
        "name": request.name,
        "worker_type": enum_from_proto(WorkerType, request.worker_type, "worker_type"),
        "capabilities": optional_value(request, "capabilities"),
        "project_id": request.project_id or None,
    }
    if request.max_concurrent_jobs:
        args["max_concurrent_jobs"] = request.max_concurrent_jobs
    return args


def list_workers_args(request: pb.ListWorkersRequest) -> dict[str, Any]:
    """``list_workers`` keywords."""
    return {
        **page_args(request),
        "project_id": request.project_id or None,
        "worker_type": _enum_filter(
            WorkerType, request.worker_type, request.filter_worker_type, "worker_type"
        ),
        "status": _enum_filter(WorkerStatus, request.status, request.filter_status, "status"),
    }


# --- queue control ---------------------------------------------------------------------


def to_struct(obj: dict[str, Any]) -> struct_pb2.Struct:
    """Convert a JSON object to a ``Struct``."""
    struct = struct_pb2.Struct()
    struct.update(obj)
    return struct


def job_filter(request: Any) -> JobFilter:
    """The ``JobFilter`` of a request's ``filter`` field (unset: no filter)."""
    given = request.filter
    return JobFilter(
        job_type=given.job_type or None,
        error=given.error or None,
        since=from_timestamp(given, "since"),
        until=from_timestamp(given, "until"),
    )


def explanation_to_proto(found: Explanation) -> pb.ExplainJobResponse:
    """Render an explanation."""
    timings = found.timings
    return pb.ExplainJobResponse(
        job_id=str(found.job.id),
        status=enum_to_proto(found.job.status),  # type: ignore[arg-type]
        state=found.state,
        summary=found.summary,
        blockers=[
            pb.Blocker(code=b.code, message=b.message, details=to_struct(b.details))
            for b in found.blockers
        ],
        timings=pb.JobTimings(
            waited_seconds=timings.waited_seconds,
            ran_seconds=timings.ran_seconds,
            retry_wait_seconds=timings.retry_wait_seconds,
            attempts=timings.attempts,
            retries=timings.retries,
            total_seconds=timings.total_seconds,
        ),
    )


def dead_letter_to_proto(letter: DeadLetter) -> pb.DeadLetter:
    """Render a dead letter with its attempts."""
    return pb.DeadLetter(
        job=job_to_proto(letter.job),
        attempts=[
            pb.Attempt(
                number=a.number,
                status=a.status.value,
                worker_name=a.worker_name or "",
                started_at=to_timestamp(a.started_at),
                finished_at=to_timestamp(a.finished_at),
                error=a.error or "",
            )
            for a in letter.attempts
        ],
    )


def redrive_args(request: pb.RedriveDeadLettersRequest) -> dict[str, Any]:
    """Keyword arguments of ``redrive_dead_letters`` (proto3 zeros mean the defaults)."""
    args: dict[str, Any] = {
        "job_filter": job_filter(request),
        "dry_run": request.dry_run if request.HasField("dry_run") else True,
    }
    if request.max_per_second:
        args["max_per_second"] = request.max_per_second
    if request.stop_after_failures:
        args["stop_after_failures"] = request.stop_after_failures
    if request.limit:
        args["limit"] = request.limit
    return args


def redrive_to_proto(result: Redrive) -> pb.RedriveDeadLettersResponse:
    """Render what a redrive did, or would do."""
    new_ids = [""] * len(result.planned) if result.dry_run else [str(j.id) for j in result.created]
    return pb.RedriveDeadLettersResponse(
        redrive_id=str(result.redrive_id) if result.redrive_id else "",
        dry_run=result.dry_run,
        count=result.count,
        skipped=result.skipped,
        jobs=[
            pb.RedrivenJob(
                original_id=str(original.id),
                job_id=new_id,
                job_type=original.job_type,
                runs_at=to_timestamp(runs_at),
            )
            for (original, runs_at), new_id in zip(result.planned, new_ids, strict=True)
        ],
    )


def bulk_args(request: pb.BulkJobsRequest) -> dict[str, Any]:
    """Keyword arguments of ``bulk_retry`` and ``bulk_cancel``."""
    args: dict[str, Any] = {
        "job_filter": job_filter(request),
        "statuses": [enum_from_proto(JobStatus, s, "statuses") for s in request.statuses] or None,
    }
    if request.limit:
        args["limit"] = request.limit
    return args


def audit_args(request: pb.ListAuditEventsRequest) -> dict[str, Any]:
    """Keyword arguments of ``audit.list_events``."""
    action = None
    if request.action:
        try:
            action = AuditAction(request.action)
        except ValueError:
            raise ValidationFailed.field("action", "Unknown action.") from None
    return {
        **page_args(request),
        "action": action,
        "target_id": request.target_id or None,
        "since": from_timestamp(request, "since"),
        "until": from_timestamp(request, "until"),
    }


def audit_event_to_proto(event: AuditEvent) -> pb.AuditEvent:
    """Render an audit event."""
    return pb.AuditEvent(
        id=str(event.id),
        created_at=to_timestamp(event.created_at),
        user_id=str(event.user_id) if event.user_id else "",
        api_key_id=str(event.api_key_id) if event.api_key_id else "",
        action=event.action,
        target_type=event.target_type,
        target_id=str(event.target_id) if event.target_id else "",
        count=event.count,
        details=to_struct(event.details),
    )


def policy_from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A policy from a ``Struct``: integral numbers become integers (burst, job caps)."""
    value = struct_pb2.Value()
    value.struct_value.CopyFrom(struct)
    policy: dict[str, Any] = from_value(value)
    return policy
