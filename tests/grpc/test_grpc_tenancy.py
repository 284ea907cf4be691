"""Tenant isolation and roles: another organization's ids are NOT_FOUND, viewers cannot write."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpcsupport import Contract, Metadata, assert_status, bearer, rpc_error

from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.conftest import Account, Auth

Call = Callable[[SimpleNamespace, Contract, dict[str, str], Metadata], Any]


def first_event(stream: Any) -> Any:
    """The first message of a server stream, then hang up."""
    try:
        return next(stream)
    finally:
        stream.cancel()


# Every RPC that names an object by id, called with ids of the ``objects`` fixture.
BY_ID: dict[str, Call] = {
    "SubmitJob": lambda s, c, ids, md: s.SubmitJob(
        c.SubmitJobRequest(queue_id=ids["queue"], job_type="echo"), metadata=md
    ),
    "GetJob": lambda s, c, ids, md: s.GetJob(c.GetJobRequest(id=ids["job"]), metadata=md),
    "CancelJob": lambda s, c, ids, md: s.CancelJob(c.CancelJobRequest(id=ids["job"]), metadata=md),
    "RetryJob": lambda s, c, ids, md: s.RetryJob(c.RetryJobRequest(id=ids["job"]), metadata=md),
    "CreateQueue": lambda s, c, ids, md: s.CreateQueue(
        c.CreateQueueRequest(name="intruder", project_id=ids["project"]), metadata=md
    ),
    "GetQueue": lambda s, c, ids, md: s.GetQueue(c.GetQueueRequest(id=ids["queue"]), metadata=md),
    "UpdateQueue": lambda s, c, ids, md: s.UpdateQueue(
        c.UpdateQueueRequest(id=ids["queue"], name="hijacked"), metadata=md
    ),
    "DeleteQueue": lambda s, c, ids, md: s.DeleteQueue(
        c.DeleteQueueRequest(id=ids["queue"]), metadata=md
    ),
    "GetQueueStats": lambda s, c, ids, md: s.GetQueueStats(
        c.GetQueueStatsRequest(id=ids["queue"]), metadata=md
    ),
    "RegisterWorker": lambda s, c, ids, md: s.RegisterWorker(
        c.RegisterWorkerRequest(name="intruder", project_id=ids["project"]), metadata=md
    ),
    "Heartbeat": lambda s, c, ids, md: s.Heartbeat(
        c.HeartbeatRequest(id=ids["worker"]), metadata=md
    ),
    "GetWorker": lambda s, c, ids, md: s.GetWorker(
        c.GetWorkerRequest(id=ids["worker"]), metadata=md
    ),
}
# The RPCs TaskForge added that name an object by id (project stubs).
ADDED_BY_ID: dict[str, Call] = {
    "WatchJob": lambda s, c, ids, md: first_event(
        s.WatchJob(pb.WatchJobRequest(id=ids["job"]), metadata=md, timeout=5)
    ),
    "SubmitJobs": lambda s, c, ids, md: s.SubmitJobs(
        pb.SubmitJobsRequest(jobs=[pb.SubmitJobRequest(queue_id=ids["queue"], job_type="echo")]),
        metadata=md,
    ),
    "PauseQueue": lambda s, c, ids, md: s.PauseQueue(
        pb.PauseQueueRequest(id=ids["queue"]), metadata=md
    ),
    "ResumeQueue": lambda s, c, ids, md: s.ResumeQueue(
        pb.ResumeQueueRequest(id=ids["queue"]), metadata=md
    ),
}
WRITES = {
    "SubmitJob",
    "CancelJob",
    "RetryJob",
    "CreateQueue",
    "UpdateQueue",
    "DeleteQueue",
    "RegisterWorker",
    "Heartbeat",
    "SubmitJobs",
    "PauseQueue",
    "ResumeQueue",
}
WORKER_WRITES = {"RegisterWorker", "Heartbeat"}


@pytest.fixture
def objects(
    grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata, queue: dict[str, Any]
) -> dict[str, str]:
    """A queue, a pending job and a worker of ``owner``'s organization, by id."""
    job = grpc_stub.SubmitJob(
        contract.SubmitJobRequest(queue_id=queue["id"], job_type="echo"), metadata=owner_md
    ).job
    worker = grpc_stub.RegisterWorker(
        contract.RegisterWorkerRequest(name="w", project_id=queue["project_id"]), metadata=owner_md
    ).worker
    return {
        "queue": queue["id"],
        "project": queue["project_id"],
        "job": job.id,
        "worker": worker.id,
    }


@pytest.fixture
def stubs(grpc_stub: SimpleNamespace, project_stub: pb_grpc.JobQueueServiceStub) -> dict[str, Any]:
    """The seed client for seed RPCs, the project's for the added ones."""
    return {**dict.fromkeys(BY_ID, grpc_stub), **dict.fromkeys(ADDED_BY_ID, project_stub)}


CALLS = {**BY_ID, **ADDED_BY_ID}


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_another_organizations_ids_are_not_found(
    rpc: str,
    auth: Auth,
    stubs: dict[str, Any],
    contract: Contract,
    objects: dict[str, str],
    grpc_stub: SimpleNamespace,
    owner_md: Metadata,
) -> None:
    intruder = bearer(auth.register("Intruders").access_token)
    error = rpc_error(CALLS[rpc], stubs[rpc], contract, objects, intruder)
    assert_status(error, grpc.StatusCode.NOT_FOUND)
    job = grpc_stub.GetJob(contract.GetJobRequest(id=objects["job"]), metadata=owner_md).job
    assert job.status == contract.JobStatus.Value("PENDING")
    queue = grpc_stub.GetQueue(contract.GetQueueRequest(id=objects["queue"]), metadata=owner_md)
    assert queue.queue.name == "default-queue" and queue.queue.is_active


def test_lists_never_show_another_organization(
    auth: Auth, grpc_stub: SimpleNamespace, contract: Contract, objects: dict[str, str]
) -> None:
    intruder = bearer(auth.register("Intruders").access_token)
    for request, rpc in [
        (contract.ListJobsRequest(), grpc_stub.ListJobs),
        (contract.ListJobsRequest(queue_id=objects["queue"]), grpc_stub.ListJobs),
        (contract.ListQueuesRequest(), grpc_stub.ListQueues),
        (contract.ListQueuesRequest(project_id=objects["project"]), grpc_stub.ListQueues),
        (contract.ListWorkersRequest(), grpc_stub.ListWorkers),
    ]:
        assert rpc(request, metadata=intruder).total == 0


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_viewers_read_but_cannot_write(
    rpc: str,
    auth: Auth,
    owner: Account,
    stubs: dict[str, Any],
    contract: Contract,
    objects: dict[str, str],
) -> None:
    viewer = bearer(auth.member(owner, "viewer").access_token)
    if rpc not in WRITES:
        CALLS[rpc](stubs[rpc], contract, objects, viewer)
        return
    error = rpc_error(CALLS[rpc], stubs[rpc], contract, objects, viewer)
    assert_status(error, grpc.StatusCode.PERMISSION_DENIED)


@pytest.mark.parametrize("rpc", sorted(WORKER_WRITES))
def test_members_cannot_register_workers_or_heartbeat(
    rpc: str,
    auth: Auth,
    owner: Account,
    stubs: dict[str, Any],
    contract: Contract,
    objects: dict[str, str],
) -> None:
    member = bearer(auth.member(owner, "member").access_token)
    error = rpc_error(CALLS[rpc], stubs[rpc], contract, objects, member)
    assert_status(error, grpc.StatusCode.PERMISSION_DENIED, "worker:write")


def test_members_manage_queues_and_jobs(
    auth: Auth,
    owner: Account,
    project_stub: pb_grpc.JobQueueServiceStub,
    objects: dict[str, str],
) -> None:
    member = bearer(auth.member(owner, "member").access_token)
    mask = field_mask_pb2.FieldMask(paths=["description"])
    request = pb.UpdateQueueRequest(
        id=objects["queue"], description="by a member", update_mask=mask
    )
    assert project_stub.UpdateQueue(request, metadata=member).queue.description == "by a member"
    assert project_stub.CancelJob(pb.CancelJobRequest(id=objects["job"]), metadata=member).success
