"""The ``taskforge.JobQueueService`` servicer: thin adapters over ``app.services``.

Each RPC converts the request (``grpc_service.convert``), calls one service
function inside one ``session_scope`` and converts the result back; the
interceptor supplies the actor and maps errors to status codes.
"""

from __future__ import annotations

from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.servicers.base import ServicerBase
from grpc_service.servicers.jobs import JobRpcs
from grpc_service.servicers.queues import QueueRpcs
from grpc_service.servicers.workers import WorkerRpcs


class JobQueueServicer(JobRpcs, QueueRpcs, WorkerRpcs, pb_grpc.JobQueueServiceServicer):
    """Every RPC of ``taskforge.JobQueueService``."""


__all__ = ["JobQueueServicer", "ServicerBase"]
