"""/jobs: submit, list, get, cancel, retry, stats."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, request
from flask.views import MethodView

from app.api import schemas
from app.api.context import commit, current_actor, db
from app.api.errors import error_response
from app.api.extensions import Blueprint
from app.api.pagination import page_body
from app.errors import ValidationFailed
from app.models import Job
from app.services import jobs as job_service
from app.services.job_counts import count_fields

BATCH_ERROR = re.compile(r"^jobs\[(?P<index>\d+)\]\.(?P<field>.+)$")

blp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs", description="Jobs")


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(schemas.JobListArgsSchema, location="query")
    @blp.response(200, schemas.JobListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List jobs, newest first."""
        return page_body("jobs", job_service.list_jobs(db(), actor=current_actor(), **args))

    @blp.arguments(schemas.JobCreateSchema)
    @blp.response(201, schemas.JobSchema)
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Idempotency-Key",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": job_service.IDEMPOTENCY_KEY_MAX,
                    "pattern": job_service.IDEMPOTENCY_KEY_PATTERN.pattern,
                },
                "description": "Submitting again with the same key returns the same job.",
            }
        ]
    )
    def post(self, args: dict[str, Any]) -> Job:
        """Submit a job to a queue (by ``queue_id`` or ``queue_name``)."""
        job = job_service.submit_job(
            db(),
            actor=current_actor(),
            idempotency_key=request.headers.get("Idempotency-Key"),
            **args,
        )
        commit()
        return job


@blp.route("/batch")
class JobBatch(MethodView):
    @blp.arguments(schemas.JobBatchSchema)
    @blp.response(201, schemas.JobBatchResultSchema)
    def post(self, args: dict[str, Any]) -> dict[str, Any] | Response:
        """Submit 1 to 1000 jobs at once: all of them or none.

        A bad job is reported under its index (``errors["3"]``). A job whose
        ``idempotency_key`` was used before returns that job. Each job counts
        against the rate limit.
        """
        try:
            jobs = job_service.submit_jobs(db(), actor=current_actor(), jobs=args["jobs"])
        except ValidationFailed as exc:
            return error_response(400, exc.message, by_index(exc.errors))
        commit()
        return {"jobs": jobs}


def by_index(errors: dict[str, list[str]]) -> dict[str, Any]:
    """Group ``jobs[i].<field>`` errors under ``"i"``: ``{"3": {"priority": [...]}}``."""
    grouped: dict[str, Any] = {}
    for name, messages in errors.items():
        found = BATCH_ERROR.match(name)
        if found is None:
            grouped[name] = messages
        else:
            grouped.setdefault(found["index"], {})[found["field"]] = messages
    return grouped


@blp.route("/counts")
class JobCounts(MethodView):
    @blp.response(200, schemas.JobCountsSchema)
    def get(self) -> dict[str, int]:
        """Count the organization's jobs per status (exact; one call for every status)."""
        return count_fields(job_service.job_counts(db(), actor=current_actor()))


@blp.route("/<id:job_id>")
class JobItem(MethodView):
    @blp.response(200, schemas.JobSchema)
    def get(self, job_id: str) -> Job:
        """Get a job with its result or error."""
        return job_service.get_job(db(), actor=current_actor(), job_id=job_id)


@blp.route("/<id:job_id>/cancel")
class CancelJob(MethodView):
    @blp.response(204)
    def post(self, job_id: str) -> None:
        """Cancel a pending, scheduled or running job (a running one is stopped)."""
        job_service.cancel_job(db(), actor=current_actor(), job_id=job_id)


@blp.route("/<id:job_id>/retry")
class RetryJob(MethodView):
    @blp.response(204)
    def post(self, job_id: str) -> None:
        """Run a failed job again with a fresh attempt budget."""
        job_service.retry_job(db(), actor=current_actor(), job_id=job_id)


@blp.route("/<id:job_id>/stats")
class JobStats(MethodView):
    @blp.response(200, schemas.JobStatsSchema)
    def get(self, job_id: str) -> dict[str, Any]:
        """Every attempt of a job with its worker, timings and error."""
        stats = job_service.job_stats(db(), actor=current_actor(), job_id=job_id)
        return {
            "job_id": stats.job.id,
            "status": stats.job.status,
            "attempt_count": stats.job.attempt_count,
            "max_attempts": stats.job.max_attempts,
            "wait_seconds": stats.wait_seconds,
            "run_seconds": stats.run_seconds,
            "attempts": [
                {
                    "number": a.number,
                    "status": a.status.value,
                    "worker_name": a.worker_name,
                    "started_at": a.started_at,
                    "finished_at": a.finished_at,
                    "duration_seconds": (a.finished_at - a.started_at).total_seconds()
                    if a.finished_at
                    else None,
                    "error": a.error,
                    "traceback": a.traceback,
                }
                for a in stats.attempts
            ],
        }
