"""/flower/api: Flower 2.2's read API (workers, tasks, task info, queue lengths), tenant-scoped.

Paths and JSON shapes are Flower's, under ``/api/v1/flower``, so a script written for
Flower needs only a new base URL and TaskForge credentials (bearer token or
``X-API-Key``).  The core (``app.services.flower_view``) does the scoping.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from flask.views import MethodView

from app.api.context import current_actor, db, runtime
from app.api.extensions import Blueprint
from app.api.schemas import flower as schemas
from app.services import flower_view

blp = Blueprint(
    "flower", __name__, url_prefix="/api/v1/flower", description="Flower-compatible read API"
)

KEYED = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/FlowerTask"}}


@blp.route("/api/workers")
class Workers(MethodView):
    @blp.arguments(schemas.FlowerWorkersArgsSchema, location="query")
    @blp.doc(
        responses={
            "200": {
                "description": "Nodename → {stats, active_queues, registered, conf, timestamp}"
                " (or nodename → alive with `status`), as Flower answers.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        }
    )
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Workers the caller may see, keyed by nodename (Flower's shape)."""
        return flower_view.workers(
            db(),
            actor=current_actor(),
            store=runtime().live_state,
            workername=args.get("workername"),
            status=args["status"],
        )


@blp.route("/api/tasks")
class Tasks(MethodView):
    @blp.arguments(schemas.FlowerTasksArgsSchema, location="query")
    @blp.doc(
        responses={
            "200": {
                "description": "Task id → task, as Flower answers.",
                "content": {"application/json": {"schema": KEYED}},
            }
        }
    )
    def get(self, args: dict[str, Any]) -> Response:
        """Recent tasks (one per job attempt) keyed by task id, with Flower's filters."""
        found = flower_view.tasks(db(), actor=current_actor(), store=runtime().live_state, **args)
        dump = schemas.FlowerTaskSchema().dump
        # Serialized here: Flask's JSON provider sorts keys, and the order is the answer.
        body = json.dumps({task_id: dump(task) for task_id, task in found.items()})
        return Response(body, mimetype="application/json")


@blp.route("/api/task/info/<task_id>")
class TaskInfo(MethodView):
    @blp.response(200, schemas.FlowerTaskInfoSchema)
    def get(self, task_id: str) -> dict[str, Any]:
        """One task by its Celery task id (``<job id>:<attempt - 1>``)."""
        info = flower_view.task_info(
            db(), actor=current_actor(), store=runtime().live_state, task_id=task_id
        )
        info["task_id"] = info.pop("task-id")
        return info


@blp.route("/api/queues/length")
class QueueLengths(MethodView):
    @blp.response(200, schemas.FlowerQueuesSchema)
    def get(self) -> dict[str, Any]:
        """Broker depth of each queue the caller may see."""
        return flower_view.queue_lengths(db(), actor=current_actor(), depth=runtime().broker.depth)
