"""``JobQueueServicer``: the jobs, queues and workers RPCs in one servicer."""

from __future__ import annotations

from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.servicers.jobs import JobRpcs
from grpc_service.servicers.queue_control import QueueControlRpcs
from grpc_service.servicers.queues import QueueRpcs
from grpc_service.servicers.workers import WorkerRpcs


class JobQueueServicer(
    JobRpcs, QueueRpcs, WorkerRpcs, QueueControlRpcs, pb_grpc.JobQueueServiceServicer
):
    """Every RPC of ``taskforge.JobQueueService``."""
