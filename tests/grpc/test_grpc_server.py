"""The server: health, reflection, message limits, rate limits, outages and ``main()``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from flask.testing import FlaskClient
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from grpcsupport import Contract, Metadata, api_key, assert_status, bearer, rpc_error

from app.api.app import create_app
from app.config import PROJECT_ROOT, Settings
from app.redis_server import free_port
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from grpc_service.interceptors import peer_address
from grpc_service.server import MAX_MESSAGE_BYTES
from tests.support.redis_monitor import commands_sent

if TYPE_CHECKING:
    from tests.conftest import Account

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


def _tighten(client: FlaskClient, owner: Account, limit: str) -> None:
    response = client.patch(
        f"/api/v1/organizations/{owner.organization_id}",
        json={"settings": {"rate_limit": limit}},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.json


def _key(client: FlaskClient, owner: Account) -> str:
    body = {"name": "k", "scopes": ["queue:read"]}
    response = client.post("/api/v1/api-keys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.json
    return str(response.json["key"])


def test_an_organizations_limit_is_one_budget_across_rest_and_grpc(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    client: FlaskClient,
    owner: Account,
) -> None:
    keys = [_key(client, owner), _key(client, owner)]
    _tighten(client, owner, "5 per minute")
    address = start_grpc_server(settings)
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        for key in keys:
            stub.ListQueues(contract.ListQueuesRequest(), metadata=api_key(key))
        stub.ListQueues(contract.ListQueuesRequest(), metadata=bearer(owner.access_token))
        for key in keys:
            assert client.get("/api/v1/queues", headers={"X-API-Key": key}).status_code == 200
        for metadata in (api_key(keys[0]), api_key(keys[1]), bearer(owner.access_token)):
            error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=metadata)
            assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "5 per 1 minute")
    assert client.get("/api/v1/queues", headers=owner.headers).status_code == 429


def test_an_identity_is_one_bucket_across_rest_and_grpc(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    client: FlaskClient,
    owner: Account,
) -> None:
    key = _key(client, owner)
    limited = create_app(settings.replace(rate_limit_default="4 per minute")).test_client()
    address = start_grpc_server(settings.replace(rate_limit_default="4 per minute"))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        callers = ((api_key(key), {"X-API-Key": key}), (bearer(owner.access_token), owner.headers))
        for metadata, headers in callers:
            stub.ListQueues(contract.ListQueuesRequest(), metadata=metadata)
            stub.ListQueues(contract.ListQueuesRequest(), metadata=metadata)
            assert limited.get("/api/v1/queues", headers=headers).status_code == 200
            assert limited.get("/api/v1/queues", headers=headers).status_code == 200
            error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=metadata)
            assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "4 per 1 minute")
            assert limited.get("/api/v1/queues", headers=headers).status_code == 429


def test_resource_exhausted_carries_retry_info(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    owner_md: Metadata,
) -> None:
    address = start_grpc_server(settings.replace(rate_limit_default="1 per minute"))
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)
        stub.ListQueues(contract.ListQueuesRequest(), metadata=owner_md)
        error = rpc_error(stub.ListQueues, contract.ListQueuesRequest(), metadata=owner_md)
    assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED)
    status = rpc_status.from_call(error)
    assert status is not None
    [detail] = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert 0 < info.retry_delay.seconds <= 60
    assert int(dict(error.trailing_metadata())["retry-after"]) == info.retry_delay.seconds


def test_grpc_limits_cost_one_redis_round_trip_per_call(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    client: FlaskClient,
    owner: Account,
) -> None:
    key = _key(client, owner)
    _tighten(client, owner, "500 per minute")
    address = start_grpc_server(settings)
    with grpc.insecure_channel(address) as channel:
        stub = contract.stub(channel)

        def call() -> None:
            stub.ListQueues(contract.ListQueuesRequest(), metadata=api_key(key))

        call()
        assert commands_sent(settings.redis_url, call) == ["EVALSHA"]


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50123", "127.0.0.1"),
        ("ipv6:[::1]:50123", "::1"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_a_peer_counts_under_the_address_rest_sees(peer: str, address: str) -> None:
    assert peer_address(peer) == address
