"""Job RPCs: submit (one or many), get, watch, list, cancel, retry."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from app.models import TERMINAL_STATUSES
from app.services import jobs as job_service
from grpc_service import convert
from grpc_service.auth import current_actor
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.interceptors import peer_address
from grpc_service.servicers.base import ServicerBase


class JobRpcs(ServicerBase):
    """The job half of the service."""

    def SubmitJob(
        self, request: pb.SubmitJobRequest, context: grpc.ServicerContext
    ) -> pb.SubmitJobResponse:
        """Submit a job to a queue (by queue_id, else queue_name)."""
        with self.session() as session:
            job = job_service.submit_job(
                session, actor=current_actor(), **convert.submit_job_args(request)
            )
            return pb.SubmitJobResponse(job=convert.job_to_proto(job))

    def SubmitJobs(
        self, request: pb.SubmitJobsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitJobsResponse:
        """Submit a batch of jobs in one transaction."""
        actor = current_actor()
        limiter = self.runtime.rate_limiter
        if limiter is not None and len(request.jobs) > 1:
            # The interceptor spent one request; every further job counts too, as over REST.
            extra = min(len(request.jobs), job_service.BATCH_MAX) - 1
            limiter.check(actor, peer_address(context.peer()), extra)
        specs = [convert.submit_job_args(job) for job in request.jobs]
        with self.session() as session:
            jobs = job_service.submit_jobs(session, actor=actor, jobs=specs)
            return pb.SubmitJobsResponse(jobs=[convert.job_to_proto(job) for job in jobs])

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.GetJobResponse:
        """Get a job."""
        with self.session() as session:
            job = job_service.get_job(session, actor=current_actor(), job_id=request.id)
            return pb.GetJobResponse(job=convert.job_to_proto(job))

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchJobEvent]:
        """Stream the job now and at each change seen, until it is finished or the call ends."""
        if not self.watch_slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many jobs are being watched; retry later"
            )
        try:
            actor = current_actor()
            ended = threading.Event()
            context.add_callback(ended.set)
            last = None
            while True:
                with self.session() as session:
                    job = job_service.get_job(session, actor=actor, job_id=request.id)
                    current = convert.job_to_proto(job)
                    finished = job.status in TERMINAL_STATUSES
                if current != last:
                    yield pb.WatchJobEvent(job=current)
                    last = current
                if finished or ended.wait(self.watch_interval):
                    return
        finally:
            self.watch_slots.release()

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        """List jobs, newest first."""
        with self.session() as session:
            page = job_service.list_jobs(
                session, actor=current_actor(), **convert.list_jobs_args(request)
            )
            return pb.ListJobsResponse(
                jobs=[convert.job_to_proto(job) for job in page.items],
                next_after=page.next_after or "",
                **convert.page_fields(page),
            )

    def GetJobCounts(
        self, request: pb.GetJobCountsRequest, context: grpc.ServicerContext
    ) -> pb.GetJobCountsResponse:
        """Count the organization's jobs per state."""
        with self.session() as session:
            counts = job_service.job_counts(session, actor=current_actor())
        return convert.job_counts_to_proto(counts)

    def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelJobResponse:
        """Cancel a pending, scheduled or running job (a running one is stopped)."""
        with self.session() as session:
            job_service.cancel_job(session, actor=current_actor(), job_id=request.id)
        return pb.CancelJobResponse(success=True)

    def RetryJob(
        self, request: pb.RetryJobRequest, context: grpc.ServicerContext
    ) -> pb.RetryJobResponse:
        """Run a failed job again with a fresh attempt budget."""
        with self.session() as session:
            job_service.retry_job(session, actor=current_actor(), job_id=request.id)
        return pb.RetryJobResponse(success=True)
