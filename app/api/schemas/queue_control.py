"""Marshmallow schemas of queue control: audit, purge, dead letters, bulk actions, explain."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from app.api.openapi import StrictBoolean
from app.api.schemas import (
    TEXT_DOC,
    JobSchema,
    PageArgsSchema,
    PaginationSchema,
    StrictSchema,
)
from app.models import JobStatus
from app.services.audit import AuditAction
from app.services.jobs import JOB_TYPE_CHARS, JOB_TYPE_MAX
from app.services.policies import CONCURRENCY_MAX, JOB_TYPES_MAX, RATE_MAX
from app.services.queue_control import (
    BULK_MAX,
    DEFAULT_STOP_AFTER_FAILURES,
    ERROR_FILTER_MAX,
    REDRIVE_RATE_MAX,
)

ERROR_FILTER = validate.Length(min=1, max=ERROR_FILTER_MAX)
# OpenAPI 3.0's spelling of an exclusive minimum (marshmallow's Range does not say it).
ABOVE_ZERO = {"exclusiveMinimum": True}
BULK_LIMIT = validate.Range(min=1, max=BULK_MAX)


class AuditEventSchema(Schema):
    id = fields.UUID()
    created_at = fields.DateTime()
    user_id = fields.UUID(allow_none=True)
    api_key_id = fields.UUID(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.UUID(allow_none=True)
    count = fields.Integer(allow_none=True)
    details = fields.Dict()


class AuditListArgsSchema(PageArgsSchema):
    action = fields.Enum(AuditAction, by_value=True)
    target_id = fields.UUID()
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()


class AuditListSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema))
    pagination = fields.Nested(PaginationSchema)


class PurgeSchema(StrictSchema):
    confirm_name = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "The queue's name, repeated to confirm."},
    )


class CountSchema(Schema):
    count = fields.Integer()


class FilterFields(Schema):
    """Filters shared by dead letters, redrive and bulk actions."""

    job_type = fields.String(
        validate=validate.Length(min=1, max=JOB_TYPE_MAX),
        metadata={"pattern": f"^[{JOB_TYPE_CHARS}]+$"},
    )
    error = fields.String(
        validate=ERROR_FILTER,
        metadata={"description": "Text the job's last error contains.", **TEXT_DOC},
    )
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()


class DeadLetterArgsSchema(PageArgsSchema, FilterFields):
    pass


class DeadLetterAttemptSchema(Schema):
    number = fields.Integer()
    status = fields.String()
    worker_name = fields.String(allow_none=True)
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    error = fields.String(allow_none=True)


class DeadLetterSchema(JobSchema):
    """A ``DeadLetter``: the failed job's fields, and its attempts."""

    attempts = fields.List(fields.Nested(DeadLetterAttemptSchema))

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        return getattr(obj, attr) if attr == "attempts" else getattr(obj.job, attr, default)


class DeadLetterListSchema(Schema):
    dead_letters = fields.List(fields.Nested(DeadLetterSchema))
    pagination = fields.Nested(PaginationSchema)


class RedriveArgsSchema(StrictSchema, FilterFields):
    dry_run = StrictBoolean(load_default=True)
    max_per_second = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0, max=REDRIVE_RATE_MAX, min_inclusive=False),
        metadata=ABOVE_ZERO,
    )
    stop_after_failures = fields.Integer(
        load_default=DEFAULT_STOP_AFTER_FAILURES, validate=validate.Range(min=1, max=BULK_MAX)
    )
    limit = fields.Integer(load_default=BULK_MAX, validate=BULK_LIMIT)


class RedrivenSchema(Schema):
    original_id = fields.UUID()
    job_id = fields.UUID(allow_none=True)
    job_type = fields.String()
    runs_at = fields.DateTime()


class RedriveSchema(Schema):
    redrive_id = fields.UUID(allow_none=True)
    dry_run = fields.Boolean()
    count = fields.Integer()
    skipped = fields.Integer()
    jobs = fields.List(fields.Nested(RedrivenSchema))


class BulkRetryArgsSchema(StrictSchema, FilterFields):
    status = fields.List(
        fields.String(validate=validate.OneOf([JobStatus.FAILED.value])),
        validate=validate.Length(min=1),
    )
    limit = fields.Integer(load_default=BULK_MAX, validate=BULK_LIMIT)


class BulkCancelArgsSchema(StrictSchema, FilterFields):
    status = fields.List(
        fields.String(
            validate=validate.OneOf([JobStatus.PENDING.value, JobStatus.SCHEDULED.value])
        ),
        validate=validate.Length(min=1),
    )
    limit = fields.Integer(load_default=BULK_MAX, validate=BULK_LIMIT)


class BulkResultSchema(Schema):
    matched = fields.Integer()
    changed = fields.Integer()


class BlockerSchema(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class TimingsSchema(Schema):
    waited_seconds = fields.Float(allow_none=True)
    ran_seconds = fields.Float()
    retry_wait_seconds = fields.Float()
    attempts = fields.Integer()
    retries = fields.Integer()
    total_seconds = fields.Float(allow_none=True)


class ExplanationSchema(Schema):
    job_id = fields.UUID()
    status = fields.Enum(JobStatus, by_value=True)
    state = fields.String(metadata={"description": "waiting, running or finished"})
    summary = fields.String()
    blockers = fields.List(fields.Nested(BlockerSchema))
    timings = fields.Nested(TimingsSchema)


class LimitsSchema(StrictSchema):
    # A burst is the size of a rate's bucket: it needs the rate.
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "anyOf": [{"not": {"required": ["burst"]}}, {"required": ["max_dispatches_per_second"]}]
    }

    max_dispatches_per_second = fields.Float(
        validate=validate.Range(min=0, max=RATE_MAX, min_inclusive=False), metadata=ABOVE_ZERO
    )
    burst = fields.Integer(strict=True, validate=validate.Range(min=1, max=CONCURRENCY_MAX))
    max_concurrent_jobs = fields.Integer(
        strict=True, validate=validate.Range(min=1, max=CONCURRENCY_MAX)
    )


class JobTypeLimitsSchema(LimitsSchema):
    job_type = fields.String(
        required=True,
        validate=validate.Length(min=1, max=JOB_TYPE_MAX),
        metadata={"pattern": f"^[{JOB_TYPE_CHARS}]+$"},
    )


class PolicySchema(LimitsSchema):
    job_types = fields.List(
        fields.Nested(JobTypeLimitsSchema),
        validate=validate.Length(max=JOB_TYPES_MAX),
        metadata={"description": "Limits of single job types (each once), on top of the queue's."},
    )
