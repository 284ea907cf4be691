"""Marshmallow schemas of /workers (field names follow the seed's Worker)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.api.schemas import NAME, PageArgsSchema, PaginationSchema, StrictSchema
from app.models import WorkerStatus, WorkerType
from app.services.workers import MAX_CONCURRENT_JOBS


class WorkerSchema(Schema):
    id = fields.UUID()
    project_id = fields.UUID(allow_none=True)
    name = fields.String()
    hostname = fields.String(allow_none=True)
    worker_type = fields.Enum(WorkerType, by_value=True)
    status = fields.Enum(WorkerStatus, by_value=True)
    capabilities = fields.Raw(allow_none=True)
    max_concurrent_jobs = fields.Integer()
    queues = fields.List(fields.String())
    job_types = fields.List(fields.String(), allow_none=True)
    drain_mode = fields.Boolean()
    metadata = fields.Dict(attribute="heartbeat_metadata")
    last_heartbeat = fields.DateTime(allow_none=True)
    registered_at = fields.DateTime()


class WorkerListArgsSchema(PageArgsSchema):
    worker_type = fields.Enum(WorkerType, by_value=True)
    status = fields.Enum(WorkerStatus, by_value=True)
    project_id = fields.UUID()


class WorkerListSchema(Schema):
    workers = fields.List(fields.Nested(WorkerSchema))
    pagination = fields.Nested(PaginationSchema)


class WorkerRegisterSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME)
    worker_type = fields.Enum(WorkerType, by_value=True, load_default=WorkerType.GENERAL)
    capabilities = fields.Raw(load_default=None, allow_none=True)
    max_concurrent_jobs = fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=MAX_CONCURRENT_JOBS), strict=True
    )
    project_id = fields.UUID()


class HeartbeatArgsSchema(StrictSchema):
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class HeartbeatSchema(Schema):
    success = fields.Boolean()
    next_heartbeat_at = fields.DateTime()
    status = fields.Enum(WorkerStatus, by_value=True)
    drain_mode = fields.Boolean()
