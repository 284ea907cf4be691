"""``GrpcClient``: a thin client of ``taskforge.JobQueueService``.

It sends credentials as call metadata (``authorization: Bearer …`` or ``x-api-key``),
returns the REST client's dataclasses and raises its exceptions.  Retries are gRPC's
own (a channel service config): reads and submits, which always carry an
idempotency key, are retried on UNAVAILABLE with exponential backoff.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc

from taskforge_client.grpc import convert
from taskforge_client.grpc._gen import job_queue_pb2 as pb
from taskforge_client.grpc._gen import job_queue_pb2_grpc as pb_grpc
from taskforge_client.grpc.errors import error_from_rpc
from taskforge_client.jobs import new_idempotency_key
from taskforge_client.models import Job, JobStatus, Page, Queue, QueueStats, id_of

SERVICE = "taskforge.JobQueueService"
RETRY_SAFE_METHODS = (
    "SubmitJob",
    "GetJob",
    "ListJobs",
    "GetJobCounts",
    "GetQueue",
    "ListQueues",
    "GetQueueStats",
)
SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in RETRY_SAFE_METHODS],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.25s",
                "maxBackoff": "8s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
DEFAULT_TIMEOUT = 10.0


class GrpcClient:
    """A client of the gRPC service at ``target`` (``host:port``).

    Authenticate with ``token`` (an access token) or ``api_key``.  Pass
    ``credentials`` (``grpc.ssl_channel_credentials()``) for TLS, or a ready
    ``channel``.  ``timeout`` is each call's deadline in seconds.
    """

    def __init__(
        self,
        target: str = "",
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ]
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials, options=options)
                if credentials is not None
                else grpc.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._stub = pb_grpc.JobQueueServiceStub(channel)
        self._timeout = timeout
        self.metadata: tuple[tuple[str, str], ...] = ()
        if token:
            self.metadata = (("authorization", f"Bearer {token}"),)
        elif api_key:
            self.metadata = (("x-api-key", api_key),)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(
                request, metadata=self.metadata, timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    # --- jobs ---------------------------------------------------------------------

    def submit_job(
        self,
        queue: str | Queue | None,
        job_type: str,
        payload: Any = None,
        *,
        queue_id: str | None = None,
        priority: int = 0,
        max_attempts: int = 0,
        scheduled_for: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a job to ``queue`` (a name or a ``Queue``; or give ``queue_id``).

        ``max_attempts=0`` takes the queue's default.  Every submit carries an
        idempotency key (``idempotency_key`` or a new one), so a retry makes one job.
        """
        request = pb.SubmitJobRequest(
            queue_id=queue.id if isinstance(queue, Queue) else (queue_id or ""),
            queue_name=queue if isinstance(queue, str) else "",
            job_type=job_type,
            payload=convert.to_value(payload),
            priority=priority,
            max_attempts=max_attempts,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return convert.job(self._call("SubmitJob", request).job)

    def get_job(self, job: str | Job) -> Job:
        """Get a job."""
        return convert.job(self._call("GetJob", pb.GetJobRequest(id=id_of(job))).job)

    def list_jobs(
        self,
        *,
        queue: str | Queue | None = None,
        status: JobStatus | str | None = None,
        page: int = 1,
        limit: int = 10,
        after: str | None = None,
    ) -> Page[Job]:
        """One page of jobs, newest first; ``queue`` is a queue id or a ``Queue``.

        ``after`` (a page's ``next_after``) starts right after that page.
        """
        request = pb.ListJobsRequest(
            queue_id=id_of(queue) if queue else "",
            status=convert.status_number(status) if status else 0,  # type: ignore[arg-type]
            filter_status=status is not None,
            page=page,
            limit=limit,
            after=after or "",
        )
        answer = self._call("ListJobs", request)
        return convert.page([convert.job(item) for item in answer.jobs], answer, limit)

    def job_counts(self) -> dict[JobStatus, int]:
        """The organization's jobs per status, exactly, in one call."""
        answer = self._call("GetJobCounts", pb.GetJobCountsRequest())
        return {status: getattr(answer, f"{status.value}_count") for status in JobStatus}

    def cancel_job(self, job: str | Job) -> None:
        """Cancel a pending or scheduled job (``Conflict`` otherwise)."""
        self._call("CancelJob", pb.CancelJobRequest(id=id_of(job)))

    def retry_job(self, job: str | Job) -> None:
        """Queue a failed job again with a fresh attempt budget (``Conflict`` otherwise)."""
        self._call("RetryJob", pb.RetryJobRequest(id=id_of(job)))

    def watch_job(self, job: str | Job, *, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job now and at each change until it ends (or ``timeout`` s pass)."""
        try:
            for event in self._stub.WatchJob(
                pb.WatchJobRequest(id=id_of(job)), metadata=self.metadata, timeout=timeout
            ):
                yield convert.job(event.job)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    # --- queues -------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        description: str = "",
        priority: int = 0,
        settings: dict[str, Any] | None = None,
        project_id: str = "",
    ) -> Queue:
        """Create a queue (in the default project unless ``project_id`` is given)."""
        request = pb.CreateQueueRequest(
            name=name,
            description=description,
            priority=priority,
            settings=convert.to_value(settings) if settings is not None else None,
            project_id=project_id,
        )
        return convert.queue(self._call("CreateQueue", request).queue)

    def get_queue(self, queue: str | Queue) -> Queue:
        """Get a queue."""
        return convert.queue(self._call("GetQueue", pb.GetQueueRequest(id=id_of(queue))).queue)

    def list_queues(self, *, page: int = 1, limit: int = 10, project_id: str = "") -> Page[Queue]:
        """One page of queues, by name."""
        request = pb.ListQueuesRequest(page=page, limit=limit, project_id=project_id)
        answer = self._call("ListQueues", request)
        return convert.page([convert.queue(item) for item in answer.queues], answer, limit)

    def update_queue(
        self,
        queue: str | Queue,
        *,
        name: str | None = None,
        description: str | None = None,
        priority: int | None = None,
        settings: dict[str, Any] | None = None,
        is_active: bool | None = None,
    ) -> Queue:
        """Change exactly the fields given (an empty ``description`` clears it)."""
        given = {
            "name": name,
            "description": description,
            "priority": priority,
            "settings": settings,
            "is_active": is_active,
        }
        paths = [field for field, value in given.items() if value is not None]
        request = pb.UpdateQueueRequest(
            id=id_of(queue),
            name=name or "",
            description=description or "",
            priority=priority or 0,
            settings=convert.to_value(settings) if settings is not None else None,
            is_active=bool(is_active),
        )
        request.update_mask.paths.extend(paths)
        return convert.queue(self._call("UpdateQueue", request).queue)

    def delete_queue(self, queue: str | Queue) -> None:
        """Delete a queue without active jobs (``Conflict`` otherwise)."""
        self._call("DeleteQueue", pb.DeleteQueueRequest(id=id_of(queue)))

    def queue_stats(self, queue: str | Queue) -> QueueStats:
        """Count a queue's jobs per state, with broker depth and last activity."""
        return convert.queue_stats(
            self._call("GetQueueStats", pb.GetQueueStatsRequest(id=id_of(queue)))
        )

    def pause_queue(self, queue: str | Queue) -> Queue:
        """Pause a queue: none of its jobs starts until it is resumed."""
        return convert.queue(self._call("PauseQueue", pb.PauseQueueRequest(id=id_of(queue))).queue)

    def resume_queue(self, queue: str | Queue) -> Queue:
        """Resume a paused queue."""
        request = pb.ResumeQueueRequest(id=id_of(queue))
        return convert.queue(self._call("ResumeQueue", request).queue)

    # --- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
