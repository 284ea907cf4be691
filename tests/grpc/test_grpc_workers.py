"""Worker RPCs: RegisterWorker, Heartbeat, GetWorker, ListWorkers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpcsupport import UNKNOWN_ID, Contract, Metadata, assert_status, message, rpc_error

from app.config import Settings
from app.db import session_scope
from app.models import Worker, WorkerType
from app.services import workers
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def register(grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata) -> Any:
    """Register a worker through the seed client."""

    def register(**fields: Any) -> Any:
        request = message(contract.RegisterWorkerRequest, **{"name": "celery@host-1", **fields})
        return grpc_stub.RegisterWorker(request, metadata=owner_md).worker

    return register


def test_register_worker(register: Any, contract: Contract) -> None:
    capabilities = {"gpus": 2, "models": ["a", "b"], "fp16": True}
    before = datetime.now(UTC) - timedelta(seconds=1)
    worker = register(worker_type="SPECIALIZED_GPU", capabilities=capabilities)
    assert uuid.UUID(worker.id)
    assert worker.name == "celery@host-1"
    assert worker.worker_type == contract.WorkerType.Value("SPECIALIZED_GPU")
    assert worker.status == contract.WorkerStatus.Value("ONLINE")
    assert convert.from_value(worker.capabilities) == capabilities
    assert worker.max_concurrent_jobs == 1  # 0 means the default
    assert worker.project_id == ""
    assert not worker.drain_mode
    assert worker.registered_at.ToDatetime(tzinfo=UTC) >= before
    assert worker.last_heartbeat == worker.registered_at


def test_register_worker_in_a_project(register: Any, queue: Any) -> None:
    worker = register(project_id=queue["project_id"], max_concurrent_jobs=8)
    assert (worker.project_id, worker.max_concurrent_jobs) == (queue["project_id"], 8)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"max_concurrent_jobs": 5000}, "max_concurrent_jobs"),
        ({"worker_type": 9}, "worker_type"),
        ({"project_id": "nope"}, "project_id"),
        ({"capabilities": float("nan")}, "capabilities"),
    ],
)
def test_register_worker_rejects_bad_fields_naming_them(
    register: Any, fields: dict[str, Any], named: str
) -> None:
    assert_status(rpc_error(register, **fields), INVALID, named)


def test_register_worker_in_an_unknown_project_is_not_found(register: Any) -> None:
    error = rpc_error(register, project_id=str(uuid.uuid4()))
    assert_status(error, grpc.StatusCode.NOT_FOUND, "Project")


def test_heartbeat_records_metadata_and_schedules_the_next_one(
    register: Any,
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    settings: Settings,
) -> None:
    worker = register()
    request = contract.HeartbeatRequest(id=worker.id, metadata={"load": "0.7", "pid": "42"})
    response = grpc_stub.Heartbeat(request, metadata=owner_md)
    assert response.success
    with session_scope(settings.database_url) as session:
        stored = session.get(Worker, uuid.UUID(worker.id))
        assert stored is not None and stored.last_heartbeat is not None
        assert stored.heartbeat_metadata == {"load": "0.7", "pid": "42"}
        expected = stored.last_heartbeat + timedelta(seconds=10)
    assert response.next_heartbeat_at.ToDatetime(tzinfo=UTC) == expected
    got = grpc_stub.GetWorker(contract.GetWorkerRequest(id=worker.id), metadata=owner_md).worker
    assert got.last_heartbeat.ToDatetime(tzinfo=UTC) == stored.last_heartbeat


def test_heartbeat_with_oversized_metadata_is_invalid(
    register: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    request = contract.HeartbeatRequest(id=register().id, metadata={"blob": "x" * 20_000})
    error = rpc_error(grpc_stub.Heartbeat, request, metadata=owner_md)
    assert_status(error, INVALID, "metadata")


@pytest.mark.parametrize("rpc", ["Heartbeat", "GetWorker"])
@pytest.mark.parametrize(
    ("worker_id", "code"), [("bad", INVALID), (UNKNOWN_ID, grpc.StatusCode.NOT_FOUND)]
)
def test_worker_id_errors(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    rpc: str,
    worker_id: str,
    code: grpc.StatusCode,
) -> None:
    request = getattr(contract, f"{rpc}Request")(id=worker_id)
    assert_status(rpc_error(getattr(grpc_stub, rpc), request, metadata=owner_md), code)


def test_get_worker(
    register: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    worker = register(capabilities={"x": [1]})
    got = grpc_stub.GetWorker(contract.GetWorkerRequest(id=worker.id), metadata=owner_md).worker
    assert got == worker


def test_list_workers_pages_and_filters(
    register: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    register(name="a-general")
    register(name="b-io", worker_type="SPECIALIZED_IO")
    register(name="c-io", worker_type="SPECIALIZED_IO")
    first = grpc_stub.ListWorkers(contract.ListWorkersRequest(limit=2), metadata=owner_md)
    second = grpc_stub.ListWorkers(contract.ListWorkersRequest(limit=2, page=2), metadata=owner_md)
    assert (first.total, first.page, first.pages) == (3, 1, 2)
    names = [w.name for w in first.workers] + [w.name for w in second.workers]
    assert names == ["a-general", "b-io", "c-io"]
    io = contract.ListWorkersRequest(worker_type=contract.WorkerType.Value("SPECIALIZED_IO"))
    assert [w.name for w in grpc_stub.ListWorkers(io, metadata=owner_md).workers] == [
        "b-io",
        "c-io",
    ]


def test_list_workers_filters_the_default_type_and_status_when_flagged(
    register: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    register(name="general")
    register(name="cpu", worker_type="SPECIALIZED_CPU")
    general = pb.ListWorkersRequest(worker_type=pb.GENERAL, filter_worker_type=True)
    assert [w.name for w in project_stub.ListWorkers(general, metadata=owner_md).workers] == [
        "general"
    ]
    online = pb.ListWorkersRequest(status=pb.ONLINE, filter_status=True)
    assert project_stub.ListWorkers(online, metadata=owner_md).total == 2
    offline = pb.ListWorkersRequest(status=pb.OFFLINE)
    assert project_stub.ListWorkers(offline, metadata=owner_md).total == 0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"limit": 101}, "limit"),
        ({"project_id": "nope"}, "project_id"),
        ({"worker_type": 8}, "worker_type"),
    ],
)
def test_list_workers_rejects_bad_arguments(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    fields: dict[str, Any],
    named: str,
) -> None:
    request = contract.ListWorkersRequest(**fields)
    assert_status(rpc_error(grpc_stub.ListWorkers, request, metadata=owner_md), INVALID, named)


def test_heartbeat_answers_the_configured_interval_as_rest_does(
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    contract: Contract,
    owner_md: Metadata,
) -> None:
    slow = settings.replace(heartbeat_seconds=42)
    with grpc.insecure_channel(start_grpc_server(slow)) as channel:
        stub = contract.stub(channel)
        request = message(contract.RegisterWorkerRequest, name="celery@slow")
        worker = stub.RegisterWorker(request, metadata=owner_md).worker
        beat = stub.Heartbeat(contract.HeartbeatRequest(id=worker.id), metadata=owner_md)
    with session_scope(settings.database_url) as session:
        stored = session.get(Worker, uuid.UUID(worker.id))
        assert stored is not None and stored.last_heartbeat is not None
        expected = stored.last_heartbeat + timedelta(seconds=42)
    assert beat.next_heartbeat_at.ToDatetime(tzinfo=UTC) == expected


def test_a_self_registered_worker_shows_its_host_queues_and_job_types(
    register: Any,
    project_stub: pb_grpc.JobQueueServiceStub,
    owner: Any,
    owner_md: Metadata,
    settings: Settings,
) -> None:
    with session_scope(settings.database_url) as session:
        celery = workers.register_system_worker(
            session,
            hostname="celery@host-2",
            organization_id=uuid.UUID(owner.organization_id),
            worker_type=WorkerType.GENERAL,
            capabilities=None,
            concurrency=2,
            queues=["tf.a", "tf.b"],
            job_types=["mypkg.add", "echo"],
        )
        celery_id = str(celery.id)
    api_registered = register()
    get = project_stub.GetWorker
    found = get(pb.GetWorkerRequest(id=celery_id), metadata=owner_md).worker
    assert (found.hostname, list(found.queues)) == ("celery@host-2", ["tf.a", "tf.b"])
    assert (list(found.job_types), found.job_types_advertised) == (["echo", "mypkg.add"], True)
    plain = get(pb.GetWorkerRequest(id=api_registered.id), metadata=owner_md).worker
    assert (plain.hostname, list(plain.job_types), plain.job_types_advertised) == ("", [], False)
