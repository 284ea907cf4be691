"""Marshmallow schemas of /monitor: the live view of workers, task events and queues."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.api.schemas import StrictSchema
from app.services.live_state import RECENT_TASKS, TASK_STATES
from app.services.live_view import POOL_ACTIONS, POOL_STEP_MAX, TASK_LIMIT_DEFAULT, TASK_LIMIT_MAX


class WorkerPoolSchema(Schema):
    implementation = fields.String(
        allow_none=True, metadata={"example": "celery.concurrency.prefork:TaskPool"}
    )
    max_concurrency = fields.Integer(allow_none=True)
    processes = fields.Integer(allow_none=True, metadata={"description": "Live pool processes."})
    max_tasks_per_child = fields.Raw(allow_none=True)


class LiveWorkerSchema(Schema):
    id = fields.String(allow_none=True)
    hostname = fields.String()
    status = fields.String()
    active = fields.Integer()
    processed = fields.Integer()
    failed = fields.Integer()
    pool_size = fields.Integer(allow_none=True)
    loadavg = fields.List(fields.Float())
    queues = fields.List(fields.String())
    last_heartbeat = fields.String(allow_none=True)
    worker_type = fields.String(allow_none=True)
    organization_id = fields.String(
        allow_none=True, metadata={"description": "Own workers and operators only."}
    )
    job_types = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Job types it runs; own workers and operators only."},
    )
    registered_tasks = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Celery tasks it registered; own workers and operators only."},
    )
    pool = fields.Nested(WorkerPoolSchema)
    prefetch_count = fields.Integer(allow_none=True)
    rusage = fields.Dict(
        allow_none=True, metadata={"description": "Celery `inspect stats` rusage of the worker."}
    )
    sw_ver = fields.String(allow_none=True, metadata={"description": "Celery version."})


class LiveWorkersSchema(Schema):
    workers = fields.List(fields.Nested(LiveWorkerSchema))


class TaskArgsSchema(StrictSchema):
    queue_id = fields.UUID()
    job_id = fields.UUID()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    job_type = fields.String(validate=validate.Length(min=1, max=100))
    worker = fields.String(validate=validate.Length(min=1, max=255))
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()
    limit = fields.Integer(
        load_default=TASK_LIMIT_DEFAULT, validate=validate.Range(min=1, max=TASK_LIMIT_MAX)
    )
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=RECENT_TASKS))


class TaskEventSchema(Schema):
    job_id = fields.String()
    queue_id = fields.String()
    job_type = fields.String()
    state = fields.String()
    worker = fields.String(allow_none=True)
    timestamp = fields.String()
    runtime = fields.Float(allow_none=True)
    error = fields.String(allow_none=True)
    attempt = fields.Integer()
    organization_id = fields.String()
    payload = fields.Raw(
        allow_none=True, metadata={"description": "Redacted; over 4 KiB of JSON: a preview."}
    )
    result = fields.Raw(allow_none=True, metadata={"description": "Succeeded items only."})
    max_attempts = fields.Integer(allow_none=True)
    retries = fields.Integer(metadata={"description": "Attempts before this one."})
    exception = fields.String(allow_none=True, metadata={"description": "First 1,024 chars."})
    traceback = fields.String(allow_none=True, metadata={"description": "Last 8,192 chars."})


class TaskEventsSchema(Schema):
    tasks = fields.List(fields.Nested(TaskEventSchema))


class TaskTypeSchema(Schema):
    job_type = fields.String()
    queue_id = fields.String()
    queue = fields.String(allow_none=True)
    states = fields.Dict(keys=fields.String(), values=fields.Integer())
    runs = fields.Integer(metadata={"description": "Finished attempts with a runtime."})
    runtime_p50 = fields.Float(allow_none=True)
    runtime_p95 = fields.Float(allow_none=True)


class TaskTypesSchema(Schema):
    task_types = fields.List(fields.Nested(TaskTypeSchema))


class LiveQueueSchema(Schema):
    queue_id = fields.String()
    organization_id = fields.String()
    name = fields.String()
    is_active = fields.Boolean()
    depth = fields.Integer(allow_none=True)
    consumers = fields.Integer()
    throughput_per_minute = fields.Integer()
    oldest_waiting_seconds = fields.Float(allow_none=True)


class LiveQueuesSchema(Schema):
    queues = fields.List(fields.Nested(LiveQueueSchema))


class StreamTicketSchema(Schema):
    ticket = fields.String(
        metadata={"description": "Pass as ?ticket= to GET /monitor/events; it opens one stream."}
    )
    expires_in = fields.Integer(metadata={"description": "Seconds the ticket stays valid."})


class PoolArgsSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(POOL_ACTIONS))
    n = fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=POOL_STEP_MAX), strict=True
    )


class PoolReplySchema(Schema):
    hostname = fields.String()
    action = fields.String()
    n = fields.Integer()
    reply = fields.Dict(allow_none=True)
