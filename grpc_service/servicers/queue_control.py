"""Queue control RPCs: purge, explain, dead letters and redrive, bulk actions, the audit trail."""

from __future__ import annotations

import grpc

from app.services import audit, explain, policies, queue_control
from grpc_service import convert
from grpc_service.auth import current_actor
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.servicers.base import ServicerBase


class QueueControlRpcs(ServicerBase):
    """The queue-control half of the service."""

    def PurgeQueue(
        self, request: pb.PurgeQueueRequest, context: grpc.ServicerContext
    ) -> pb.PurgeQueueResponse:
        """Cancel every waiting job of a queue."""
        with self.session() as session:
            count = queue_control.purge_queue(
                session,
                actor=current_actor(),
                queue_id=request.id,
                confirm_name=request.confirm_name,
            )
        return pb.PurgeQueueResponse(count=count)

    def ExplainJob(
        self, request: pb.ExplainJobRequest, context: grpc.ServicerContext
    ) -> pb.ExplainJobResponse:
        """Say why a job is not running, or how it ran."""
        with self.session() as session:
            found = explain.explain_job(
                session,
                actor=current_actor(),
                job_id=request.id,
                lease_seconds=self.runtime.settings.lease_seconds,
                broker_depth=self.runtime.broker.depth,
                broker_head=self.runtime.broker.head,
            )
            return convert.explanation_to_proto(found)

    def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        """List a queue's dead letters with their attempts."""
        with self.session() as session:
            page = queue_control.list_dead_letters(
                session,
                actor=current_actor(),
                queue_id=request.queue_id,
                job_filter=convert.job_filter(request),
                **convert.page_args(request),
            )
            return pb.ListDeadLettersResponse(
                dead_letters=[convert.dead_letter_to_proto(letter) for letter in page.items],
                **convert.page_fields(page),
            )

    def RedriveDeadLetters(
        self, request: pb.RedriveDeadLettersRequest, context: grpc.ServicerContext
    ) -> pb.RedriveDeadLettersResponse:
        """Run dead letters again at a capped rate (or list what would run)."""
        with self.session() as session:
            result = queue_control.redrive_dead_letters(
                session,
                actor=current_actor(),
                queue_id=request.queue_id,
                **convert.redrive_args(request),
            )
            return convert.redrive_to_proto(result)

    def BulkRetryJobs(
        self, request: pb.BulkJobsRequest, context: grpc.ServicerContext
    ) -> pb.BulkJobsResponse:
        """Retry a queue's failed jobs matching a filter, each once."""
        with self.session() as session:
            result = queue_control.bulk_retry(
                session,
                actor=current_actor(),
                queue_id=request.queue_id,
                **convert.bulk_args(request),
            )
        return pb.BulkJobsResponse(matched=result.matched, changed=result.changed)

    def BulkCancelJobs(
        self, request: pb.BulkJobsRequest, context: grpc.ServicerContext
    ) -> pb.BulkJobsResponse:
        """Cancel a queue's waiting jobs matching a filter."""
        with self.session() as session:
            result = queue_control.bulk_cancel(
                session,
                actor=current_actor(),
                queue_id=request.queue_id,
                **convert.bulk_args(request),
            )
        return pb.BulkJobsResponse(matched=result.matched, changed=result.changed)

    def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        """List the organization's audit events, newest first."""
        with self.session() as session:
            page = audit.list_events(session, actor=current_actor(), **convert.audit_args(request))
            return pb.ListAuditEventsResponse(
                events=[convert.audit_event_to_proto(event) for event in page.items],
                **convert.page_fields(page),
            )

    def GetQueuePolicy(
        self, request: pb.GetQueuePolicyRequest, context: grpc.ServicerContext
    ) -> pb.QueuePolicyResponse:
        """Return a queue's dispatch policy."""
        with self.session() as session:
            policy = policies.get_policy(session, actor=current_actor(), queue_id=request.id)
        return pb.QueuePolicyResponse(policy=convert.to_struct(policy))

    def SetQueuePolicy(
        self, request: pb.SetQueuePolicyRequest, context: grpc.ServicerContext
    ) -> pb.QueuePolicyResponse:
        """Replace a queue's dispatch policy."""
        with self.session() as session:
            policy = policies.set_policy(
                session,
                actor=current_actor(),
                queue_id=request.id,
                policy=convert.policy_from_struct(request.policy),
            )
        return pb.QueuePolicyResponse(policy=convert.to_struct(policy))
