"""Marshmallow schemas of /monitor: the live view of workers, task events and queues."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.api.schemas import StrictSchema
from app.services.live_state import TASK_STATES
from app.services.live_view import POOL_ACTIONS, POOL_STEP_MAX, TASK_LIMIT_DEFAULT, TASK_LIMIT_MAX


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


class LiveWorkersSchema(Schema):
    workers = fields.List(fields.Nested(LiveWorkerSchema))


class TaskArgsSchema(StrictSchema):
    queue_id = fields.UUID()
    state = fields.String(validate=validate.OneOf(TASK_STATES))
    job_type = fields.String(validate=validate.Length(min=1, max=100))
    since = fields.AwareDateTime()
    limit = fields.Integer(
        load_default=TASK_LIMIT_DEFAULT, validate=validate.Range(min=1, max=TASK_LIMIT_MAX)
    )


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


class TaskEventsSchema(Schema):
    tasks = fields.List(fields.Nested(TaskEventSchema))


class LiveQueueSchema(Schema):
    queue_id = fields.String()
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
