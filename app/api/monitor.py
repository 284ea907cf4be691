"""/monitor: the flower-style live view of the caller's organization (workers, tasks, queues).

Everything here reads the live state the monitor process writes
(``app.services.live_state``); SQL only supplies the organization's queue ids and
names.  Scoping is per organization; a platform operator sees every organization.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView

from app.api.context import current_actor, current_token_claims, db, runtime, settings
from app.api.errors import error_response
from app.api.extensions import Blueprint
from app.api.schemas import monitor as schemas
from app.api.schemas.workers import WorkerSchema
from app.api.sse import event_stream_response, stream_slots
from app.services import live_view
from app.services import tickets as ticket_service
from app.services import workers as worker_service
from app.services.actors import Actor, Permission

blp = Blueprint("monitor", __name__, url_prefix="/api/v1/monitor", description="Live monitor")

TICKET_PARAM = "ticket"
SSE_EXAMPLE = (
    ": connected\n\n"
    'event: task\ndata: {"job_id":"…","queue_id":"…","job_type":"echo","state":"succeeded",'
    '"worker":"taskforge@host","timestamp":"2026-01-01T00:00:00+00:00","runtime":0.01,'
    '"error":null,"attempt":1}\n\n'
    ": keepalive\n\n"
    "retry: 1000\n\n"
)


def _stream_actor() -> Actor:
    """Authenticate by ``?ticket=`` (EventSource sends no headers), else by header."""
    ticket = request.args.get(TICKET_PARAM)
    if ticket is None:
        return current_actor()
    return ticket_service.redeem_stream_ticket(
        db(), runtime().stream_tickets, revocations=runtime().tokens.store, ticket=ticket
    )


@blp.route("/workers")
class LiveWorkers(MethodView):
    @blp.response(200, schemas.LiveWorkersSchema)
    def get(self) -> dict[str, Any]:
        """Workers registered to the organization or consuming its queues, with live state."""
        return {
            "workers": live_view.live_workers(
                db(), actor=current_actor(), store=runtime().live_state
            )
        }


@blp.route("/workers/<hostname>/pool")
class WorkerPool(MethodView):
    @blp.arguments(schemas.PoolArgsSchema)
    @blp.response(202, schemas.PoolReplySchema)
    def post(self, args: dict[str, Any], hostname: str) -> dict[str, Any]:
        """Grow, shrink or restart the pool of one of the organization's own workers."""
        return live_view.control_pool(
            db(),
            actor=current_actor(),
            hostname=hostname,
            control=runtime().worker_control,
            **args,
        )


@blp.route("/workers/<hostname>/drain")
class WorkerDrain(MethodView):
    @blp.response(202, WorkerSchema)
    def post(self, hostname: str) -> Any:
        """Drain a Celery worker by nodename: it stops consuming every queue, finishes its work.

        Tenants drain their own workers; platform operators also the shared ones.
        """
        return worker_service.drain_by_hostname(db(), actor=current_actor(), hostname=hostname)


@blp.route("/tasks")
class TaskEvents(MethodView):
    @blp.arguments(schemas.TaskArgsSchema, location="query")
    @blp.response(200, schemas.TaskEventsSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The organization's recent task events, newest first."""
        return {
            "tasks": live_view.recent_tasks(
                db(), actor=current_actor(), store=runtime().live_state, **args
            )
        }


@blp.route("/task-types")
class TaskTypes(MethodView):
    @blp.response(200, schemas.TaskTypesSchema)
    def get(self) -> dict[str, Any]:
        """Per job type and queue: recent task events by state, runtime p50 and p95."""
        return {
            "task_types": live_view.task_type_overview(
                db(), actor=current_actor(), store=runtime().live_state
            )
        }


@blp.route("/queues")
class LiveQueues(MethodView):
    @blp.response(200, schemas.LiveQueuesSchema)
    def get(self) -> dict[str, Any]:
        """Each queue with broker depth, consumers, last minute's throughput and oldest wait."""
        return {
            "queues": live_view.queue_overview(
                db(),
                actor=current_actor(),
                store=runtime().live_state,
                depth=runtime().broker.depth,
            )
        }


@blp.route("/events/tickets")
class EventTickets(MethodView):
    @blp.response(201, schemas.StreamTicketSchema)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(403, response="FORBIDDEN")
    def post(self) -> dict[str, Any]:
        """Get a single-use ticket that opens one event stream within 30 s."""
        ticket = ticket_service.mint_stream_ticket(
            runtime().stream_tickets, actor=current_actor(), token_claims=current_token_claims()
        )
        return {"ticket": ticket, "expires_in": ticket_service.TICKET_SECONDS}


@blp.route("/events")
class Events(MethodView):
    @blp.doc(
        responses={
            "200": {
                "description": (
                    "Server-sent events, each `event: task` (data: a `TaskEvent`) or "
                    "`event: worker` (data: a `LiveWorker`, for `worker:read` holders), with "
                    "`: keepalive` comments between them; the stream ends after "
                    "TASKFORGE_SSE_MAX_SECONDS with `retry: 1000`. The body is a stream of "
                    "text, so its schema is a string; `x-sse-events` gives each event's data."
                ),
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": SSE_EXAMPLE,
                    }
                },
                "x-sse-events": {
                    "task": {"$ref": "#/components/schemas/TaskEvent"},
                    "worker": {"$ref": "#/components/schemas/LiveWorker"},
                },
            },
            "503": {
                "description": "Service Unavailable: too many open event streams; see Retry-After",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
        parameters=[
            {
                "in": "query",
                "name": TICKET_PARAM,
                "schema": {"type": "string"},
                "description": "A ticket from POST /monitor/events/tickets, for EventSource"
                " clients that cannot send headers; it opens one stream.",
            }
        ],
    )
    def get(self) -> Response:
        """Stream the organization's task and worker events (server-sent events, ≤30 s each)."""
        actor = _stream_actor()
        actor.require(Permission.JOB_READ)
        kinds = {"task", "worker"} if actor.can(Permission.WORKER_READ) else {"task"}
        config = settings()
        slots = stream_slots(current_app, config.sse_max_streams)
        if not slots.acquire(blocking=False):
            response = error_response(503, "Too many open event streams; retry shortly")
            response.headers["Retry-After"] = "5"
            return response
        try:
            pubsub = runtime().live_state.subscribe(str(actor.organization_id))
        except BaseException:
            slots.release()
            raise
        return event_stream_response(
            pubsub,
            slots.release,
            kinds=kinds,
            max_seconds=config.sse_max_seconds,
            keepalive_seconds=config.sse_keepalive_seconds,
        )
