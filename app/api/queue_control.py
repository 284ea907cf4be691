"""Queue control: audit trail, purge, dead letters and redrive, bulk actions, explain."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from app.api.context import current_actor, db, runtime, settings
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.api.schemas import queue_control as schemas
from app.models import JobStatus
from app.services import audit, explain, policies, queue_control
from app.services.queue_control import JobFilter

blp = Blueprint(
    "queue_control", __name__, url_prefix="/api/v1", description="Queue control and audit"
)


def _filter(args: dict[str, Any]) -> JobFilter:
    return JobFilter(
        job_type=args.pop("job_type", None),
        error=args.pop("error", None),
        since=args.pop("since", None),
        until=args.pop("until", None),
    )


@blp.route("/audit")
class AuditEvents(MethodView):
    @blp.arguments(schemas.AuditListArgsSchema, location="query")
    @blp.response(200, schemas.AuditListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List the organization's audit events, newest first (admins)."""
        return page_body("events", audit.list_events(db(), actor=current_actor(), **args))


@blp.route("/queues/<id:queue_id>/purge")
class PurgeQueue(MethodView):
    @blp.arguments(schemas.PurgeSchema)
    @blp.response(200, schemas.CountSchema)
    def post(self, args: dict[str, Any], queue_id: str) -> dict[str, int]:
        """Cancel every waiting job of a queue (running ones are untouched); admins."""
        count = queue_control.purge_queue(db(), actor=current_actor(), queue_id=queue_id, **args)
        return {"count": count}


@blp.route("/queues/<id:queue_id>/policy")
class QueuePolicy(MethodView):
    @blp.response(200, schemas.PolicySchema)
    def get(self, queue_id: str) -> dict[str, Any]:
        """Get a queue's rate and concurrency limits."""
        return policies.get_policy(db(), actor=current_actor(), queue_id=queue_id)

    @blp.arguments(schemas.PolicySchema)
    @blp.response(200, schemas.PolicySchema)
    def put(self, args: dict[str, Any], queue_id: str) -> dict[str, Any]:
        """Replace a queue's limits (workers apply them at their next message); admins."""
        return policies.set_policy(db(), actor=current_actor(), queue_id=queue_id, policy=args)


@blp.route("/queues/<id:queue_id>/dead-letters")
class DeadLetters(MethodView):
    @blp.arguments(schemas.DeadLetterArgsSchema, location="query")
    @blp.response(200, schemas.DeadLetterListSchema)
    def get(self, args: dict[str, Any], queue_id: str) -> dict[str, Any]:
        """List a queue's failed, not yet redriven jobs with their attempts."""
        job_filter = _filter(args)
        page = queue_control.list_dead_letters(
            db(), actor=current_actor(), queue_id=queue_id, job_filter=job_filter, **args
        )
        return page_body("dead_letters", page)


@blp.route("/queues/<id:queue_id>/dead-letters/redrive")
class RedriveDeadLetters(MethodView):
    @blp.arguments(schemas.RedriveArgsSchema)
    @blp.response(200, schemas.RedriveSchema)
    def post(self, args: dict[str, Any], queue_id: str) -> dict[str, Any]:
        """Run dead letters again as new jobs at a capped rate (dry_run lists them); admins."""
        job_filter = _filter(args)
        result = queue_control.redrive_dead_letters(
            db(), actor=current_actor(), queue_id=queue_id, job_filter=job_filter, **args
        )
        new_ids: list[uuid.UUID | None] = (
            [None] * len(result.planned) if result.dry_run else [job.id for job in result.created]
        )
        return {
            "redrive_id": result.redrive_id,
            "dry_run": result.dry_run,
            "count": result.count,
            "skipped": result.skipped,
            "jobs": [
                {
                    "original_id": original.id,
                    "job_id": new_id,
                    "job_type": original.job_type,
                    "runs_at": runs_at,
                }
                for (original, runs_at), new_id in zip(result.planned, new_ids, strict=True)
            ],
        }


@blp.route("/queues/<id:queue_id>/jobs/bulk-retry")
class BulkRetry(MethodView):
    @blp.arguments(schemas.BulkRetryArgsSchema)
    @blp.response(200, schemas.BulkResultSchema)
    def post(self, args: dict[str, Any], queue_id: str) -> queue_control.BulkResult:
        """Retry a queue's failed jobs that match the filter, each once; admins."""
        job_filter = _filter(args)
        return queue_control.bulk_retry(
            db(),
            actor=current_actor(),
            queue_id=queue_id,
            job_filter=job_filter,
            statuses=[JobStatus(value) for value in args.pop("status", [])],
            **args,
        )


@blp.route("/queues/<id:queue_id>/jobs/bulk-cancel")
class BulkCancel(MethodView):
    @blp.arguments(schemas.BulkCancelArgsSchema)
    @blp.response(200, schemas.BulkResultSchema)
    def post(self, args: dict[str, Any], queue_id: str) -> queue_control.BulkResult:
        """Cancel a queue's waiting jobs that match the filter; admins."""
        job_filter = _filter(args)
        return queue_control.bulk_cancel(
            db(),
            actor=current_actor(),
            queue_id=queue_id,
            job_filter=job_filter,
            statuses=[JobStatus(value) for value in args.pop("status", [])],
            **args,
        )


@blp.route("/jobs/<id:job_id>/explain")
class ExplainJob(MethodView):
    @blp.response(200, schemas.ExplanationSchema)
    def get(self, job_id: str) -> dict[str, Any]:
        """Say why a job is not running (every blocker, with numbers), or how it ran."""
        found = explain.explain_job(
            db(),
            actor=current_actor(),
            job_id=job_id,
            lease_seconds=settings().lease_seconds,
            broker_depth=runtime().broker.depth,
            broker_head=runtime().broker.head,
        )
        return {
            "job_id": found.job.id,
            "status": found.job.status,
            "state": found.state,
            "summary": found.summary,
            "blockers": found.blockers,
            "timings": found.timings,
        }
