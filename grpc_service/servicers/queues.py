"""Queue RPCs: CRUD, pause/resume and statistics."""

from __future__ import annotations

import grpc

from app.services import queues as queue_service
from grpc_service import convert
from grpc_service.auth import current_actor
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.servicers.base import ServicerBase


class QueueRpcs(ServicerBase):
    """The queue half of the service."""

    def CreateQueue(
        self, request: pb.CreateQueueRequest, context: grpc.ServicerContext
    ) -> pb.CreateQueueResponse:
        """Create a queue (in the default project when project_id is empty)."""
        with self.session() as session:
            queue = queue_service.create_queue(
                session, actor=current_actor(), **convert.create_queue_args(request)
            )
            return pb.CreateQueueResponse(queue=convert.queue_to_proto(queue))

    def GetQueue(
        self, request: pb.GetQueueRequest, context: grpc.ServicerContext
    ) -> pb.GetQueueResponse:
        """Get a queue."""
        with self.session() as session:
            queue = queue_service.get_queue(session, actor=current_actor(), queue_id=request.id)
            return pb.GetQueueResponse(queue=convert.queue_to_proto(queue))

    def UpdateQueue(
        self, request: pb.UpdateQueueRequest, context: grpc.ServicerContext
    ) -> pb.UpdateQueueResponse:
        """Change a queue's fields (see update_mask in the proto)."""
        with self.session() as session:
            queue = queue_service.update_queue(
                session,
                actor=current_actor(),
                queue_id=request.id,
                **convert.update_queue_args(request),
            )
            return pb.UpdateQueueResponse(queue=convert.queue_to_proto(queue))

    def DeleteQueue(
        self, request: pb.DeleteQueueRequest, context: grpc.ServicerContext
    ) -> pb.DeleteQueueResponse:
        """Delete a queue without active jobs."""
        with self.session() as session:
            queue_service.delete_queue(session, actor=current_actor(), queue_id=request.id)
        return pb.DeleteQueueResponse(success=True)

    def ListQueues(
        self, request: pb.ListQueuesRequest, context: grpc.ServicerContext
    ) -> pb.ListQueuesResponse:
        """List queues by name."""
        with self.session() as session:
            page = queue_service.list_queues(
                session, actor=current_actor(), **convert.list_queues_args(request)
            )
            return pb.ListQueuesResponse(
                queues=[convert.queue_to_proto(queue) for queue in page.items],
                **convert.page_fields(page),
            )

    def GetQueueStats(
        self, request: pb.GetQueueStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetQueueStatsResponse:
        """Count a queue's jobs per state, with broker depth and activity."""
        with self.session() as session:
            stats = queue_service.queue_stats(
                session,
                actor=current_actor(),
                queue_id=request.id,
                broker_depth=self.runtime.broker.depth,
            )
        return convert.queue_stats_to_proto(stats)

    def PauseQueue(
        self, request: pb.PauseQueueRequest, context: grpc.ServicerContext
    ) -> pb.PauseQueueResponse:
        """Pause a queue: none of its jobs starts until it is resumed."""
        with self.session() as session:
            queue = queue_service.pause_queue(session, actor=current_actor(), queue_id=request.id)
            return pb.PauseQueueResponse(queue=convert.queue_to_proto(queue))

    def ResumeQueue(
        self, request: pb.ResumeQueueRequest, context: grpc.ServicerContext
    ) -> pb.ResumeQueueResponse:
        """Resume a paused queue."""
        with self.session() as session:
            queue = queue_service.resume_queue(session, actor=current_actor(), queue_id=request.id)
            return pb.ResumeQueueResponse(queue=convert.queue_to_proto(queue))
