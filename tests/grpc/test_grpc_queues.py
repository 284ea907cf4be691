"""Queue RPCs: CreateQueue, GetQueue, UpdateQueue, DeleteQueue, ListQueues, GetQueueStats,
plus PauseQueue and ResumeQueue."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpcsupport import (
    UNKNOWN_ID,
    Contract,
    Metadata,
    assert_status,
    message,
    rpc_error,
    set_job_status,
)

from app.config import Settings
from app.models import JobStatus
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def create(grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata) -> Any:
    """Create a queue through the seed client."""

    def create(**fields: Any) -> Any:
        request = message(contract.CreateQueueRequest, **{"name": "emails", **fields})
        return grpc_stub.CreateQueue(request, metadata=owner_md).queue

    return create


def test_create_queue_in_the_default_project(create: Any) -> None:
    queue = create(description="Outgoing mail", priority=4, settings={"max_attempts": 5})
    assert uuid.UUID(queue.id) and uuid.UUID(queue.project_id)
    assert (queue.name, queue.description, queue.priority) == ("emails", "Outgoing mail", 4)
    assert convert.from_value(queue.settings) == {"max_attempts": 5}
    assert queue.is_active
    assert queue.created_at.seconds > 0


def test_create_queue_in_a_named_project(create: Any, queue: Any) -> None:
    assert create(project_id=queue["project_id"]).project_id == queue["project_id"]


def test_create_queue_with_a_taken_name_is_a_failed_precondition(create: Any) -> None:
    create()
    assert_status(rpc_error(create), grpc.StatusCode.FAILED_PRECONDITION, "emails")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"description": "x" * 501}, "description"),
        ({"priority": 10}, "priority"),
        ({"settings": {"max_attempts": 0}}, "settings.max_attempts"),
        ({"settings": {"colour": "blue"}}, "settings.colour"),
        ({"settings": [1, 2]}, "settings"),
        ({"project_id": "not-a-uuid"}, "project_id"),
    ],
)
def test_create_queue_rejects_bad_fields_naming_them(
    create: Any, fields: dict[str, Any], named: str
) -> None:
    assert_status(rpc_error(create, **fields), INVALID, named)


def test_create_queue_in_an_unknown_project_is_not_found(create: Any) -> None:
    error = rpc_error(create, project_id=str(uuid.uuid4()))
    assert_status(error, grpc.StatusCode.NOT_FOUND, "Project")


def test_get_queue(
    create: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    queue = create()
    assert (
        grpc_stub.GetQueue(contract.GetQueueRequest(id=queue.id), metadata=owner_md).queue == queue
    )


@pytest.mark.parametrize("rpc", ["GetQueue", "UpdateQueue", "DeleteQueue", "GetQueueStats"])
@pytest.mark.parametrize(
    ("queue_id", "code"), [("bad", INVALID), (UNKNOWN_ID, grpc.StatusCode.NOT_FOUND)]
)
def test_queue_id_errors(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    rpc: str,
    queue_id: str,
    code: grpc.StatusCode,
) -> None:
    request = getattr(contract, f"{rpc}Request")(id=queue_id)
    assert_status(rpc_error(getattr(grpc_stub, rpc), request, metadata=owner_md), code)


def test_update_queue_leaves_empty_fields_unchanged_and_applies_is_active(
    create: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    queue = create(description="keep me", priority=3)
    request = contract.UpdateQueueRequest(id=queue.id, name="renamed", is_active=True)
    updated = grpc_stub.UpdateQueue(request, metadata=owner_md).queue
    assert (updated.name, updated.description, updated.priority) == ("renamed", "keep me", 3)
    assert updated.is_active
    request = contract.UpdateQueueRequest(id=queue.id, priority=6)
    paused = grpc_stub.UpdateQueue(request, metadata=owner_md).queue
    assert (paused.name, paused.priority, paused.is_active) == ("renamed", 6, False)


def test_update_queue_with_a_mask_sets_exactly_those_fields(
    create: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    queue = create(description="drop me", priority=3, settings={"max_attempts": 5})
    request = pb.UpdateQueueRequest(
        id=queue.id,
        name="ignored: not in the mask",
        update_mask=field_mask_pb2.FieldMask(paths=["description", "priority", "settings"]),
    )
    updated = project_stub.UpdateQueue(request, metadata=owner_md).queue
    assert (updated.name, updated.description, updated.priority) == ("emails", "", 0)
    assert convert.from_value(updated.settings) == {}
    assert updated.is_active


@pytest.mark.parametrize(
    ("fields", "named"),
    [({"priority": 12}, "priority"), ({"name": " "}, "name")],
)
def test_update_queue_rejects_bad_fields(
    create: Any,
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    fields: dict[str, Any],
    named: str,
) -> None:
    request = contract.UpdateQueueRequest(id=create().id, is_active=True, **fields)
    assert_status(rpc_error(grpc_stub.UpdateQueue, request, metadata=owner_md), INVALID, named)


def test_update_queue_to_a_taken_name_is_a_failed_precondition(
    create: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    create(name="first")
    second = create(name="second")
    request = contract.UpdateQueueRequest(id=second.id, name="first", is_active=True)
    error = rpc_error(grpc_stub.UpdateQueue, request, metadata=owner_md)
    assert_status(error, grpc.StatusCode.FAILED_PRECONDITION)


def test_update_queue_with_an_unknown_mask_path_is_invalid(
    create: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    request = pb.UpdateQueueRequest(
        id=create().id, update_mask=field_mask_pb2.FieldMask(paths=["colour"])
    )
    error = rpc_error(project_stub.UpdateQueue, request, metadata=owner_md)
    assert_status(error, INVALID, "update_mask", "colour")


def test_delete_queue(
    create: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    queue = create()
    assert grpc_stub.DeleteQueue(
        contract.DeleteQueueRequest(id=queue.id), metadata=owner_md
    ).success
    error = rpc_error(grpc_stub.GetQueue, contract.GetQueueRequest(id=queue.id), metadata=owner_md)
    assert_status(error, grpc.StatusCode.NOT_FOUND)


def test_delete_queue_with_active_jobs_is_a_failed_precondition(
    grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata, queue: Any
) -> None:
    job = contract.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    grpc_stub.SubmitJob(job, metadata=owner_md)
    request = contract.DeleteQueueRequest(id=queue["id"])
    error = rpc_error(grpc_stub.DeleteQueue, request, metadata=owner_md)
    assert_status(error, grpc.StatusCode.FAILED_PRECONDITION, "pending")


def test_list_queues_pages_with_real_totals(
    create: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    names = sorted(create(name=f"q{n}").name for n in range(3))
    first = grpc_stub.ListQueues(contract.ListQueuesRequest(limit=2), metadata=owner_md)
    second = grpc_stub.ListQueues(contract.ListQueuesRequest(limit=2, page=2), metadata=owner_md)
    assert (first.total, first.page, first.pages) == (3, 1, 2)
    assert [q.name for q in first.queues] + [q.name for q in second.queues] == names
    project_id = first.queues[0].project_id
    same_project = contract.ListQueuesRequest(project_id=project_id)
    assert grpc_stub.ListQueues(same_project, metadata=owner_md).total == 3
    other_project = contract.ListQueuesRequest(project_id=str(uuid.uuid4()))
    assert grpc_stub.ListQueues(other_project, metadata=owner_md).total == 0


@pytest.mark.parametrize(
    ("fields", "named"), [({"limit": 101}, "limit"), ({"project_id": "nope"}, "project_id")]
)
def test_list_queues_rejects_bad_arguments(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    fields: dict[str, Any],
    named: str,
) -> None:
    request = contract.ListQueuesRequest(**fields)
    assert_status(rpc_error(grpc_stub.ListQueues, request, metadata=owner_md), INVALID, named)


def test_get_queue_stats_counts_each_state(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    queue: Any,
    settings: Settings,
) -> None:
    submit = contract.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    ids = [grpc_stub.SubmitJob(submit, metadata=owner_md).job.id for _ in range(4)]
    set_job_status(settings.database_url, ids[0], JobStatus.SUCCEEDED)
    set_job_status(settings.database_url, ids[1], JobStatus.FAILED)
    grpc_stub.CancelJob(contract.CancelJobRequest(id=ids[2]), metadata=owner_md)
    stats = grpc_stub.GetQueueStats(
        contract.GetQueueStatsRequest(id=queue["id"]), metadata=owner_md
    )
    assert stats.queue_id == queue["id"]
    counts = (stats.pending_count, stats.processing_count, stats.succeeded_count)
    assert counts == (1, 0, 1)
    assert (stats.failed_count, stats.scheduled_count) == (1, 0)
    assert stats.is_active and stats.HasField("last_activity")
    full = pb.GetQueueStatsResponse.FromString(stats.SerializeToString())
    assert (full.cancelled_count, full.total_count) == (1, 4)
    assert full.HasField("oldest_pending_age_seconds") and full.HasField("broker_depth")


def test_pause_and_resume_queue(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    paused = project_stub.PauseQueue(pb.PauseQueueRequest(id=queue["id"]), metadata=owner_md)
    assert not paused.queue.is_active
    resumed = project_stub.ResumeQueue(pb.ResumeQueueRequest(id=queue["id"]), metadata=owner_md)
    assert resumed.queue.is_active


@pytest.mark.parametrize("rpc", ["PauseQueue", "ResumeQueue"])
@pytest.mark.parametrize(
    ("queue_id", "code"), [("bad", INVALID), (UNKNOWN_ID, grpc.StatusCode.NOT_FOUND)]
)
def test_pause_and_resume_errors(
    project_stub: pb_grpc.JobQueueServiceStub,
    owner_md: Metadata,
    rpc: str,
    queue_id: str,
    code: grpc.StatusCode,
) -> None:
    request = getattr(pb, f"{rpc}Request")(id=queue_id)
    assert_status(rpc_error(getattr(project_stub, rpc), request, metadata=owner_md), code)
