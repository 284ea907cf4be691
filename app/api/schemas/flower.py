"""Marshmallow schemas of /flower: Flower 2.2's read API shapes (keyed by worker or task id)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.api.schemas import StrictSchema
from app.services.flower_view import CELERY_STATES, SORT_KEYS

STATES = ("All", *CELERY_STATES.values())
SORTS = (*SORT_KEYS, *(f"-{key}" for key in SORT_KEYS))


# Flower's format; an empty value means no bound, as in Flower.
RECEIVED_DOC = "YYYY-MM-DD HH:MM, UTC; empty for no bound"
RECEIVED_PATTERN = r"^(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d)?$"


class FlowerWorkersArgsSchema(StrictSchema):
    workername = fields.String(validate=validate.Length(min=1, max=255))
    status = fields.Boolean(load_default=False)
    refresh = fields.Boolean(
        load_default=False,
        metadata={"description": "Accepted for Flower scripts; the monitor refreshes every 10 s."},
    )


class FlowerTasksArgsSchema(StrictSchema):
    limit = fields.Integer(validate=validate.Range(min=1))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    workername = fields.String(validate=validate.Length(min=1, max=255))
    taskname = fields.String(validate=validate.Length(min=1, max=100))
    state = fields.String(validate=validate.OneOf(STATES))
    received_start = fields.String(
        metadata={"description": RECEIVED_DOC, "pattern": RECEIVED_PATTERN}
    )
    received_end = fields.String(
        metadata={"description": RECEIVED_DOC, "pattern": RECEIVED_PATTERN}
    )
    sort_by = fields.String(validate=validate.OneOf(SORTS))


class FlowerTaskSchema(Schema):
    uuid = fields.String()
    name = fields.String(metadata={"description": "The job type."})
    state = fields.String(metadata={"example": "SUCCESS"})
    received = fields.Float(allow_none=True)
    started = fields.Float(allow_none=True)
    succeeded = fields.Float(allow_none=True)
    failed = fields.Float(allow_none=True)
    retried = fields.Float(allow_none=True)
    revoked = fields.Float(allow_none=True)
    rejected = fields.Float(allow_none=True)
    sent = fields.Float(allow_none=True)
    eta = fields.String(allow_none=True)
    expires = fields.String(allow_none=True)
    clock = fields.Integer(allow_none=True)
    client = fields.String(allow_none=True)
    exchange = fields.String(allow_none=True)
    routing_key = fields.String(allow_none=True)
    args = fields.String(metadata={"description": "JSON of the (redacted) payload as args."})
    kwargs = fields.String()
    result = fields.String(allow_none=True)
    exception = fields.String(allow_none=True)
    traceback = fields.String(allow_none=True)
    retries = fields.Integer(allow_none=True)
    runtime = fields.Float(allow_none=True)
    timestamp = fields.Float()
    worker = fields.String(allow_none=True)
    job_id = fields.String()
    attempt = fields.Integer()
    queue_id = fields.String()
    organization_id = fields.String(allow_none=True)


class FlowerTaskInfoSchema(FlowerTaskSchema):
    class Meta:
        exclude = ("uuid",)

    task_id = fields.String(data_key="task-id")


class FlowerQueueSchema(Schema):
    name = fields.String(metadata={"description": "The Celery queue, tf.<queue id>."})
    messages = fields.Integer()
    queue = fields.String(metadata={"description": "The TaskForge queue's name."})
    queue_id = fields.String()


class FlowerQueuesSchema(Schema):
    active_queues = fields.List(fields.Nested(FlowerQueueSchema))
