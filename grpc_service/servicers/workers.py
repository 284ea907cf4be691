"""Worker RPCs: register, heartbeat, get, list."""

from __future__ import annotations

import grpc

from app.services import workers as worker_service
from grpc_service import convert
from grpc_service.auth import current_actor
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.servicers.base import ServicerBase


class WorkerRpcs(ServicerBase):
    """The worker half of the service."""

    def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: grpc.ServicerContext
    ) -> pb.RegisterWorkerResponse:
        """Register a worker of the caller's organization."""
        with self.session() as session:
            worker = worker_service.register_worker(
                session, actor=current_actor(), **convert.register_worker_args(request)
            )
            return pb.RegisterWorkerResponse(worker=convert.worker_to_proto(worker))

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        """Record that a worker is alive; answer when to send the next heartbeat."""
        with self.session() as session:
            beat = worker_service.heartbeat(
                session,
                actor=current_actor(),
                worker_id=request.id,
                interval=self.runtime.heartbeat_interval,
                metadata=dict(request.metadata),
            )
        return pb.HeartbeatResponse(
            success=True, next_heartbeat_at=convert.to_timestamp(beat.next_heartbeat_at)
        )

    def GetWorker(
        self, request: pb.GetWorkerRequest, context: grpc.ServicerContext
    ) -> pb.GetWorkerResponse:
        """Get a worker."""
        with self.session() as session:
            worker = worker_service.get_worker(session, actor=current_actor(), worker_id=request.id)
            return pb.GetWorkerResponse(worker=convert.worker_to_proto(worker))

    def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkersResponse:
        """List workers by name, optionally by type and status."""
        with self.session() as session:
            page = worker_service.list_workers(
                session, actor=current_actor(), **convert.list_workers_args(request)
            )
            return pb.ListWorkersResponse(
                workers=[convert.worker_to_proto(worker) for worker in page.items],
                **convert.page_fields(page),
            )
