"""/workers: list, register, get, heartbeat, drain."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.api.context import current_actor, db, runtime
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.api.schemas import workers as schemas
from app.models import Worker
from app.services import workers as worker_service

blp = Blueprint("workers", __name__, url_prefix="/api/v1/workers", description="Workers")


@blp.route("")
class Workers(MethodView):
    @blp.arguments(schemas.WorkerListArgsSchema, location="query")
    @blp.response(200, schemas.WorkerListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the organization's workers by name."""
        page = worker_service.list_workers(db(), actor=current_actor(), **args)
        return page_body("workers", page)

    @blp.arguments(schemas.WorkerRegisterSchema)
    @blp.response(201, schemas.WorkerSchema)
    def post(self, args: dict[str, Any]) -> Worker:
        """Register a worker of the organization; it starts online."""
        return worker_service.register_worker(db(), actor=current_actor(), **args)


@blp.route("/<id:worker_id>")
class WorkerItem(MethodView):
    @blp.response(200, schemas.WorkerSchema)
    def get(self, worker_id: str) -> Worker:
        """Get a worker."""
        return worker_service.get_worker(db(), actor=current_actor(), worker_id=worker_id)


@blp.route("/<id:worker_id>/heartbeat")
class WorkerHeartbeat(MethodView):
    @blp.arguments(schemas.HeartbeatArgsSchema, required=False)
    @blp.response(200, schemas.HeartbeatSchema)
    def post(self, args: dict[str, Any] | None, worker_id: str) -> dict[str, Any]:
        """Record that a worker is alive; answer when to send the next heartbeat."""
        beat = worker_service.heartbeat(
            db(),
            actor=current_actor(),
            worker_id=worker_id,
            interval=runtime().heartbeat_interval,
            metadata=(args or {}).get("metadata"),
        )
        return {
            "success": True,
            "next_heartbeat_at": beat.next_heartbeat_at,
            "status": beat.worker.status,
            "drain_mode": beat.worker.drain_mode,
        }


@blp.route("/<id:worker_id>/drain")
class DrainWorker(MethodView):
    @blp.response(202, schemas.WorkerSchema)
    def post(self, worker_id: str) -> Worker:
        """Drain a worker: it takes no new jobs, finishes its running ones, then goes offline."""
        return worker_service.drain_worker(db(), actor=current_actor(), worker_id=worker_id)
