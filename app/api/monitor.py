"""/monitor: the flower-style live view of the caller's organization (workers, tasks, queues).

Everything here reads the monitor's Redis state (``app.monitor``); SQL only
supplies the organization's queue ids and names.  Scoping is strictly per
organization: there is no platform-wide view.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView

from app.api import worker_schemas as schemas
from app.api.context import current_actor, current_token_claims, db, settings, token_store
from app.api.errors import error_response
from app.api.sse import event_stream_response, stream_slots
from app.extensions import Blueprint
from app.monitor.store import MonitorStore
from app.services import monitor as monitor_service
from app.services import tickets as ticket_service
from app.services.actors import Actor, Permission
from app.tokens import StreamTickets
from tasks.control import CeleryWorkerControl

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
_STORE_KEY = "taskforge.monitor"


def stream_tickets() -> StreamTickets:
    """The running app's store of event-stream tickets."""
    tickets: StreamTickets = current_app.extensions["taskforge.stream_tickets"]
    return tickets


def monitor_store() -> MonitorStore:
    """The running app's reader of the monitor's Redis state."""
    extensions = current_app.extensions
    if _STORE_KEY not in extensions:
        extensions.setdefault(_STORE_KEY, MonitorStore.from_url(settings().redis_url))
    store: MonitorStore = extensions[_STORE_KEY]
    return store


def _stream_actor() -> Actor:
    """Authenticate by ``?ticket=`` (EventSource sends no headers), else by header."""
    ticket = request.args.get(TICKET_PARAM)
    if ticket is None:
        return current_actor()
    return ticket_service.redeem_stream_ticket(
        db(), stream_tickets(), revocations=token_store(), ticket=ticket
    )


@blp.route("/workers")
class LiveWorkers(MethodView):
    @blp.response(200, schemas.LiveWorkersSchema)
    def get(self) -> dict[str, Any]:
        """Workers registered to the organization or consuming its queues, with live state."""
        return {
            "workers": monitor_service.live_workers(
                db(), actor=current_actor(), store=monitor_store()
            )
        }


@blp.route("/workers/<hostname>/pool")
class WorkerPool(MethodView):
    @blp.arguments(schemas.PoolArgsSchema)
    @blp.response(202, schemas.PoolReplySchema)
    def post(self, args: dict[str, Any], hostname: str) -> dict[str, Any]:
        """Grow, shrink or restart the pool of one of the organization's own workers."""
        return monitor_service.control_pool(
            db(), actor=current_actor(), hostname=hostname, control=CeleryWorkerControl(), **args
        )


@blp.route("/tasks")
class TaskEvents(MethodView):
    @blp.arguments(schemas.TaskArgsSchema, location="query")
    @blp.response(200, schemas.TaskEventsSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The organization's recent task events, newest first."""
        return {
            "tasks": monitor_service.recent_tasks(
                actor=current_actor(), store=monitor_store(), **args
            )
        }


@blp.route("/queues")
class LiveQueues(MethodView):
    @blp.response(200, schemas.LiveQueuesSchema)
    def get(self) -> dict[str, Any]:
        """Each queue with broker depth, consumers, last minute's throughput and oldest wait."""
        return {
            "queues": monitor_service.queue_overview(
                db(),
                actor=current_actor(),
                store=monitor_store(),
                depth=current_app.extensions["taskforge.broker"].depth,
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
            stream_tickets(), actor=current_actor(), token_claims=current_token_claims()
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
            pubsub = monitor_store().subscribe(str(actor.organization_id))
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
