"""The server: health, reflection, message limits, rate limits, outages and ``main()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpcsupport import Contract, Metadata, assert_status, bearer, rpc_error

from app.config import PROJECT_ROOT, Settings
from app.redis_server import free_port
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.server import MAX_MESSAGE_BYTES

SERVICE = "taskforge.JobQueueService"


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_is_serving_without_credentials(grpc_channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(grpc_channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(grpc_channel)
    assert {SERVICE, "grpc.health.v1.Health"} <= set(database.get_services())
    service = descriptor_pool.DescriptorPool(database).FindServiceByName(SERVICE)
    assert {"SubmitJob", "ListWorkers", "WatchJob", "SubmitJobs"} <= set(service.methods_by_name)


def test_oversized_messages_are_resource_exhausted(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    payload = convert.to_value("x" * (MAX_MESSAGE_BYTES + 1))
    request = pb.SubmitJobRequest(queue_name="any", job_type="echo", payload=payload)
    error = rpc_error(project_stub.SubmitJob, request, metadata=owner_md, timeout=10)
    assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_calls_beyond_the_rate_limit_are_resource_exhausted(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    owner_md: Metadata,
) -> None:
    address = start_grpc_server(settings.replace(rate_limit_default="3 per minute"))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        for _ in range(3):
            stub.ListQueues(contract.ListQueuesRequest(), metadata=owner_md)
        error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=owner_md)
        assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "3 per 1 minute")
        assert int(dict(error.trailing_metadata())["retry-after"]) >= 1
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_invented_credentials_count_against_the_address(
    settings: Settings, start_grpc_server: Callable[[Settings], str], contract: Contract
) -> None:
    address = start_grpc_server(settings.replace(rate_limit_default="2 per minute"))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        for n in range(2):
            error = rpc_error(
                stub.ListQueues, contract.ListQueuesRequest(), metadata=bearer(f"invented-{n}")
            )
            assert_status(error, grpc.StatusCode.UNAUTHENTICATED)
        error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=bearer("other"))
        assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_redis_outage_is_unavailable_not_a_crash(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    owner_md: Metadata,
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    address = start_grpc_server(settings.replace(redis_url=dead))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=owner_md)
    assert_status(error, grpc.StatusCode.UNAVAILABLE, "token store")


def test_database_outage_is_unavailable_not_a_crash(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    owner_md: Metadata,
) -> None:
    dead = f"postgresql+psycopg://taskforge@127.0.0.1:{free_port()}/taskforge"
    address = start_grpc_server(settings.replace(database_url=dead))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=owner_md)
    assert_status(error, grpc.StatusCode.UNAVAILABLE, "database")


def test_unknown_methods_are_unimplemented(grpc_channel: grpc.Channel) -> None:
    call = grpc_channel.unary_unary(f"/{SERVICE}/NoSuchMethod")
    assert_status(rpc_error(call, b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_main_serves_until_a_signal_then_stops_gracefully(
    settings: Settings, tmp_path: Path, signum: int
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "TASKFORGE_GRPC_PORT": str(port),
    }
    log = tmp_path / "grpc.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "grpc_service.server"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            health = health_pb2_grpc.HealthStub(channel)
            response = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert "gRPC server stopped" in log.read_text()
