"""/queues: CRUD, pause/resume, stats."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.api import schemas
from app.api.context import current_actor, db, runtime
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.models import Queue
from app.services import queues as queue_service
from app.services.job_counts import count_fields

blp = Blueprint("queues", __name__, url_prefix="/api/v1/queues", description="Queues")


@blp.route("")
class Queues(MethodView):
    @blp.arguments(schemas.QueueListArgsSchema, location="query")
    @blp.response(200, schemas.QueueListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List queues."""
        return page_body("queues", queue_service.list_queues(db(), actor=current_actor(), **args))

    @blp.arguments(schemas.QueueCreateSchema)
    @blp.response(201, schemas.QueueSchema)
    def post(self, args: dict[str, Any]) -> Queue:
        """Create a queue."""
        return queue_service.create_queue(db(), actor=current_actor(), **args)


@blp.route("/<id:queue_id>")
class QueueItem(MethodView):
    @blp.response(200, schemas.QueueSchema)
    def get(self, queue_id: str) -> Queue:
        """Get a queue."""
        return queue_service.get_queue(db(), actor=current_actor(), queue_id=queue_id)

    @blp.arguments(schemas.QueueReplaceSchema)
    @blp.response(200, schemas.QueueSchema)
    def put(self, args: dict[str, Any], queue_id: str) -> Queue:
        """Replace a queue's name, description, priority, settings and state."""
        return queue_service.update_queue(db(), actor=current_actor(), queue_id=queue_id, **args)

    @blp.arguments(schemas.QueuePatchSchema)
    @blp.response(200, schemas.QueueSchema)
    def patch(self, args: dict[str, Any], queue_id: str) -> Queue:
        """Change some of a queue's fields."""
        return queue_service.update_queue(db(), actor=current_actor(), queue_id=queue_id, **args)

    @blp.response(204)
    def delete(self, queue_id: str) -> None:
        """Delete a queue without active jobs."""
        queue_service.delete_queue(db(), actor=current_actor(), queue_id=queue_id)


@blp.route("/<id:queue_id>/pause")
class PauseQueue(MethodView):
    @blp.response(204)
    def post(self, queue_id: str) -> None:
        """Pause a queue: no job of it starts until it is resumed."""
        queue_service.pause_queue(db(), actor=current_actor(), queue_id=queue_id)


@blp.route("/<id:queue_id>/resume")
class ResumeQueue(MethodView):
    @blp.response(204)
    def post(self, queue_id: str) -> None:
        """Resume a paused queue."""
        queue_service.resume_queue(db(), actor=current_actor(), queue_id=queue_id)


@blp.route("/<id:queue_id>/stats")
class QueueStats(MethodView):
    @blp.response(200, schemas.QueueStatsSchema)
    def get(self, queue_id: str) -> dict[str, Any]:
        """Count a queue's jobs per state, with broker depth and activity."""
        stats = queue_service.queue_stats(
            db(),
            actor=current_actor(),
            queue_id=queue_id,
            broker_depth=runtime().broker.depth,
        )
        body: dict[str, Any] = dict(count_fields(stats.counts))
        body.update(
            queue_id=stats.queue_id,
            broker_depth=stats.broker_depth,
            is_active=stats.is_active,
            last_activity=stats.last_activity,
            oldest_pending_age_seconds=stats.oldest_pending_age_seconds,
        )
        return body
