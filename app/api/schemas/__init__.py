"""Marshmallow schemas of the REST contract (field names follow the seed)."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate

from app.api.openapi import NAME_TEXT, STORABLE_TEXT, StrictBoolean
from app.models import JobStatus, Role, WorkerType
from app.services.actors import Permission
from app.services.jobs import (
    BATCH_MAX,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    JOB_TYPE_CHARS,
    JOB_TYPE_MAX,
)
from app.services.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.services.queue_settings import QueueSettings

NAME = validate.Length(min=1, max=100)
DESCRIPTION = validate.Length(max=500)
PRIORITY = validate.Range(min=0, max=9)
MAX_ATTEMPTS = validate.Range(min=1, max=10)
# Documentation only (metadata, not validators): the services enforce these rules.
NAME_DOC = {"pattern": NAME_TEXT}
TEXT_DOC = {"pattern": STORABLE_TEXT}
QUEUE_SETTINGS_DOC = {
    "properties": {
        **{
            key: {"type": "integer", "minimum": low, "maximum": high}
            for key, (low, high) in QueueSettings.INTEGER_BOUNDS.items()
        },
        "worker_type": {"type": "string", "enum": [w.value for w in WorkerType]},
    },
    "additionalProperties": False,
}


class StrictSchema(Schema):
    """Unknown fields are errors (marshmallow's RAISE), never silently dropped."""


class ErrorSchema(Schema):
    """The body of every error response."""

    error = fields.String(required=True)
    status_code = fields.Integer(required=True)
    errors = fields.Dict(keys=fields.String())


# --- auth ---------------------------------------------------------------------------


class RegisterSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(
        required=True, validate=validate.Length(min=8, max=128), load_only=True
    )
    organization_name = fields.String(required=True, validate=NAME, metadata=NAME_DOC)


class RegisteredSchema(Schema):
    user_id = fields.UUID()
    organization_id = fields.UUID()
    message = fields.String()


class LoginSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(
        required=True, validate=validate.Length(min=1, max=128), load_only=True
    )


class TokensSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class RefreshSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class LogoutSchema(StrictSchema):
    refresh_token = fields.String(validate=validate.Length(min=1, max=4096))


class PasswordChangeSchema(StrictSchema):
    current_password = fields.String(
        required=True, validate=validate.Length(min=1, max=128), load_only=True
    )
    new_password = fields.String(
        required=True, validate=validate.Length(min=8, max=128), load_only=True
    )


class ValidateSchema(Schema):
    valid = fields.Boolean()
    user_id = fields.String()
    organization_id = fields.String()
    role = fields.String()
    expires_at = fields.DateTime()


# --- pagination ---------------------------------------------------------------------


class PageArgsSchema(StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


class PaginationSchema(Schema):
    page = fields.Integer()
    limit = fields.Integer()
    total = fields.Integer()
    pages = fields.Integer()


# --- organizations ------------------------------------------------------------------


class OrganizationSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String()
    settings = fields.Dict()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class OrganizationUpdateSchema(StrictSchema):
    name = fields.String(validate=NAME, metadata=NAME_DOC)
    # ``rate_limit`` is checked by the service (app.services.ratelimit), for every edge.
    settings = fields.Dict(
        keys=fields.String(),
        metadata={
            "description": "Free-form; `rate_limit` (e.g. '600 per minute') is one budget"
            " for all the organization's users and keys, over REST and gRPC."
        },
    )


class MemberSchema(Schema):
    id = fields.UUID()
    email = fields.String()
    role = fields.Enum(Role, by_value=True)
    is_active = fields.Boolean()
    created_at = fields.DateTime()


class MemberCreateSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(
        required=True, validate=validate.Length(min=8, max=128), load_only=True
    )
    role = fields.Enum(Role, by_value=True, load_default=Role.MEMBER)


class MemberUpdateSchema(StrictSchema):
    role = fields.Enum(Role, by_value=True, required=True)


class MemberListSchema(Schema):
    members = fields.List(fields.Nested(MemberSchema))
    pagination = fields.Nested(PaginationSchema)


# --- projects -----------------------------------------------------------------------


class ProjectSchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ProjectCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME, metadata=NAME_DOC)
    description = fields.String(allow_none=True, validate=DESCRIPTION, metadata=TEXT_DOC)


class ProjectUpdateSchema(StrictSchema):
    name = fields.String(validate=NAME, metadata=NAME_DOC)
    description = fields.String(allow_none=True, validate=DESCRIPTION, metadata=TEXT_DOC)


class ProjectListSchema(Schema):
    projects = fields.List(fields.Nested(ProjectSchema))
    pagination = fields.Nested(PaginationSchema)


# --- queues -------------------------------------------------------------------------


class QueueSchema(Schema):
    id = fields.UUID()
    project_id = fields.UUID()
    name = fields.String()
    description = fields.String(allow_none=True)
    priority = fields.Integer()
    settings = fields.Dict()
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class QueueCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME, metadata=NAME_DOC)
    description = fields.String(allow_none=True, validate=DESCRIPTION, metadata=TEXT_DOC)
    priority = fields.Integer(load_default=0, validate=PRIORITY, strict=True)
    settings = fields.Dict(load_default=dict, metadata=QUEUE_SETTINGS_DOC)
    project_id = fields.UUID()


class QueueReplaceSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME, metadata=NAME_DOC)
    description = fields.String(
        allow_none=True, load_default=None, validate=DESCRIPTION, metadata=TEXT_DOC
    )
    priority = fields.Integer(load_default=0, validate=PRIORITY, strict=True)
    settings = fields.Dict(load_default=dict, metadata=QUEUE_SETTINGS_DOC)
    is_active = StrictBoolean(load_default=True)


class QueuePatchSchema(StrictSchema):
    name = fields.String(validate=NAME, metadata=NAME_DOC)
    description = fields.String(allow_none=True, validate=DESCRIPTION, metadata=TEXT_DOC)
    priority = fields.Integer(validate=PRIORITY, strict=True)
    settings = fields.Dict(metadata=QUEUE_SETTINGS_DOC)
    is_active = StrictBoolean()


class QueueListArgsSchema(PageArgsSchema):
    project_id = fields.UUID()


class QueueListSchema(Schema):
    queues = fields.List(fields.Nested(QueueSchema))
    pagination = fields.Nested(PaginationSchema)


class JobCountsSchema(Schema):
    pending_count = fields.Integer()
    scheduled_count = fields.Integer()
    processing_count = fields.Integer()
    succeeded_count = fields.Integer()
    failed_count = fields.Integer()
    cancelled_count = fields.Integer()
    total_count = fields.Integer()


class QueueStatsSchema(JobCountsSchema):
    queue_id = fields.UUID()
    broker_depth = fields.Integer(allow_none=True)
    is_active = fields.Boolean()
    last_activity = fields.DateTime(allow_none=True)
    oldest_pending_age_seconds = fields.Float(allow_none=True)


# --- jobs ---------------------------------------------------------------------------


class JobSchema(Schema):
    id = fields.UUID()
    queue_id = fields.UUID()
    job_type = fields.String()
    payload = fields.Raw(allow_none=True)
    status = fields.Enum(JobStatus, by_value=True)
    priority = fields.Integer()
    max_attempts = fields.Integer()
    attempt_count = fields.Integer()
    scheduled_for = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)


class JobCreateSchema(StrictSchema):
    OPENAPI_EXTRA: ClassVar[dict[str, Any]] = {
        "anyOf": [{"required": ["queue_id"]}, {"required": ["queue_name"]}]
    }

    queue_id = fields.UUID()
    queue_name = fields.String(validate=NAME, metadata=NAME_DOC)
    job_type = fields.String(
        required=True,
        validate=validate.Length(min=1, max=JOB_TYPE_MAX),
        metadata={"pattern": f"^[{JOB_TYPE_CHARS}]+$"},
    )
    payload = fields.Raw(load_default=None, allow_none=True)
    priority = fields.Integer(load_default=0, validate=PRIORITY, strict=True)
    max_attempts = fields.Integer(validate=MAX_ATTEMPTS, strict=True)
    scheduled_for = fields.AwareDateTime(allow_none=True)


class JobBatchItemSchema(JobCreateSchema):
    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX),
        metadata={
            "pattern": IDEMPOTENCY_KEY_PATTERN.pattern,
            "description": "Submitting again with the same key returns the same job.",
        },
    )


class JobBatchSchema(StrictSchema):
    jobs = fields.List(
        fields.Nested(JobBatchItemSchema),
        required=True,
        validate=validate.Length(min=1, max=BATCH_MAX),
    )

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        """Report a bad job by its index alone (``{"3": {...}}``), as the service does."""
        messages = error.messages
        if isinstance(messages, dict) and set(messages) == {"jobs"}:
            items = messages["jobs"]
            if isinstance(items, dict) and all(isinstance(index, int) for index in items):
                raise ValidationError({str(index): items[index] for index in sorted(items)})


class JobBatchResultSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))


class JobListArgsSchema(PageArgsSchema):
    status = fields.Enum(JobStatus, by_value=True)
    queue_id = fields.UUID()
    after = fields.String(
        # base64url without padding, as app.services.jobs writes it (CURSOR_MAX long at most).
        validate=validate.Regexp(
            r"^[A-Za-z0-9_-]{1,200}$", error="Not a cursor a job list returned."
        ),
        metadata={
            "description": "Start after the last job of a page: its `pagination.next_after` "
            "(costs what page 1 does at any depth; leave `page` out)."
        },
    )


class JobPaginationSchema(PaginationSchema):
    next_after = fields.String(
        allow_none=True,
        metadata={"description": "The `after` of the next page; null when this page is not full."},
    )


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))
    pagination = fields.Nested(JobPaginationSchema)


class AttemptSchema(Schema):
    number = fields.Integer()
    status = fields.String()
    worker = fields.String(attribute="worker_name", allow_none=True)
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    duration_seconds = fields.Float(allow_none=True)
    error = fields.String(allow_none=True)
    traceback = fields.String(allow_none=True)


class JobStatsSchema(Schema):
    job_id = fields.UUID()
    status = fields.Enum(JobStatus, by_value=True)
    attempt_count = fields.Integer()
    max_attempts = fields.Integer()
    wait_seconds = fields.Float(allow_none=True)
    run_seconds = fields.Float()
    attempts = fields.List(fields.Nested(AttemptSchema))


# --- API keys -----------------------------------------------------------------------


class ApiKeySchema(Schema):
    id = fields.UUID()
    organization_id = fields.UUID()
    created_by_id = fields.UUID(
        allow_none=True,
        metadata={
            "description": "The user whose current role caps the key (for a key"
            " minted by a key: the user at the top of the chain)."
        },
    )
    created_by_key_id = fields.UUID(
        allow_none=True, metadata={"description": "The API key that minted this one, if any."}
    )
    name = fields.String()
    prefix = fields.String()
    scopes = fields.List(fields.String())
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The full key; shown in this response only."})


class ApiKeyCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME, metadata=NAME_DOC)
    scopes = fields.List(
        fields.String(validate=validate.OneOf([p.value for p in Permission])),
        required=True,
        validate=validate.Length(min=1, max=len(Permission)),
    )
    expires_at = fields.AwareDateTime(allow_none=True, load_default=None)


class ApiKeyListSchema(Schema):
    api_keys = fields.List(fields.Nested(ApiKeySchema))
    pagination = fields.Nested(PaginationSchema)
