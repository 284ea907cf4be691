"""gRPC calls are counted and timed by method and status code (grpc_service/metrics.py)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import grpc
from grpcsupport import Contract, Metadata, message, rpc_error
from prometheus_client import REGISTRY

SERVICE = "/taskforge.JobQueueService"


def _count(method: str, code: str) -> float:
    labels = {"method": f"{SERVICE}/{method}", "code": code}
    return REGISTRY.get_sample_value("taskforge_grpc_requests_total", labels) or 0.0


def test_calls_are_counted_with_their_status(
    grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    ok, missing = _count("ListQueues", "OK"), _count("GetQueue", "NOT_FOUND")
    grpc_stub.ListQueues(message(contract.ListQueuesRequest), metadata=owner_md)
    request = message(contract.GetQueueRequest, id=str(uuid.uuid4()))
    error = rpc_error(grpc_stub.GetQueue, request, metadata=owner_md)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    unauthenticated = _count("ListQueues", "UNAUTHENTICATED")
    rpc_error(grpc_stub.ListQueues, message(contract.ListQueuesRequest))
    assert _count("ListQueues", "OK") == ok + 1
    assert _count("GetQueue", "NOT_FOUND") == missing + 1
    assert _count("ListQueues", "UNAUTHENTICATED") == unauthenticated + 1
    duration = REGISTRY.get_sample_value(
        "taskforge_grpc_request_duration_seconds_count", {"method": f"{SERVICE}/ListQueues"}
    )
    assert duration is not None and duration >= 2
