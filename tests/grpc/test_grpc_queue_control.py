"""Queue-control RPCs over a real channel: each a thin edge over the same core as REST."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from flask.testing import FlaskClient
from google.protobuf import json_format, struct_pb2
from grpcsupport import Metadata, assert_status, bearer, rpc_error

from app.config import Settings
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from tests.support.api import create_queue, submit_job
from tests.support.execution import execute

if TYPE_CHECKING:
    from tests.conftest import Account, Auth

Stub = pb_grpc.JobQueueServiceStub


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


Call = Callable[[Stub, dict[str, Any], Metadata], Any]


@pytest.fixture
def world(client: FlaskClient, owner: Account, settings: Settings) -> dict[str, Any]:
    """A queue ``ctl`` with a waiting job and a dead letter."""
    queue = create_queue(client, owner.headers, "ctl")
    failed = submit_job(
        client, owner.headers, queue, job_type="fail", max_attempts=1, payload={"message": "boom"}
    )
    assert execute(failed["id"], 0, "w@h", settings.database_url) == "failed"
    return {
        "queue": queue["id"],
        "job": submit_job(client, owner.headers, queue)["id"],
        "failed": failed["id"],
    }


ADMIN: dict[str, Call] = {
    "PurgeQueue": lambda s, w, md: s.PurgeQueue(
        pb.PurgeQueueRequest(id=w["queue"], confirm_name="ctl"), metadata=md
    ),
    "RedriveDeadLetters": lambda s, w, md: s.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(queue_id=w["queue"], dry_run=False), metadata=md
    ),
    "BulkRetryJobs": lambda s, w, md: s.BulkRetryJobs(
        pb.BulkJobsRequest(queue_id=w["queue"]), metadata=md
    ),
    "BulkCancelJobs": lambda s, w, md: s.BulkCancelJobs(
        pb.BulkJobsRequest(queue_id=w["queue"]), metadata=md
    ),
    "SetQueuePolicy": lambda s, w, md: s.SetQueuePolicy(
        pb.SetQueuePolicyRequest(id=w["queue"], policy=_struct({"max_concurrent_jobs": 2})),
        metadata=md,
    ),
    "ListAuditEvents": lambda s, w, md: s.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=md),
}
READ: dict[str, Call] = {
    "GetQueuePolicy": lambda s, w, md: s.GetQueuePolicy(
        pb.GetQueuePolicyRequest(id=w["queue"]), metadata=md
    ),
    "ExplainJob": lambda s, w, md: s.ExplainJob(pb.ExplainJobRequest(id=w["job"]), metadata=md),
    "ListDeadLetters": lambda s, w, md: s.ListDeadLetters(
        pb.ListDeadLettersRequest(queue_id=w["queue"]), metadata=md
    ),
}


@pytest.mark.parametrize("rpc", sorted(ADMIN))
@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_act(
    rpc: str, role: str, auth: Auth, owner: Account, project_stub: Stub, world: dict[str, Any]
) -> None:
    account = bearer(auth.member(owner, role).access_token)
    assert_status(
        rpc_error(ADMIN[rpc], project_stub, world, account), grpc.StatusCode.PERMISSION_DENIED
    )
    ADMIN[rpc](project_stub, world, bearer(auth.member(owner, "admin").access_token))


@pytest.mark.parametrize("rpc", sorted(READ))
def test_viewers_read(
    rpc: str, auth: Auth, owner: Account, project_stub: Stub, world: dict[str, Any]
) -> None:
    READ[rpc](project_stub, world, bearer(auth.member(owner, "viewer").access_token))


@pytest.mark.parametrize("rpc", sorted(set(ADMIN) - {"ListAuditEvents"} | set(READ)))
def test_another_organizations_ids_are_not_found(
    rpc: str, auth: Auth, project_stub: Stub, world: dict[str, Any]
) -> None:
    intruder = bearer(auth.register("Intruders").access_token)
    call = {**ADMIN, **READ}[rpc]
    assert_status(rpc_error(call, project_stub, world, intruder), grpc.StatusCode.NOT_FOUND)


def test_purge_explain_and_audit(project_stub: Stub, owner_md: Metadata, world: dict) -> None:
    wrong = rpc_error(
        project_stub.PurgeQueue,
        pb.PurgeQueueRequest(id=world["queue"], confirm_name="nope"),
        metadata=owner_md,
    )
    assert_status(wrong, grpc.StatusCode.INVALID_ARGUMENT, "confirm_name")
    project_stub.PauseQueue(pb.PauseQueueRequest(id=world["queue"]), metadata=owner_md)
    found = project_stub.ExplainJob(pb.ExplainJobRequest(id=world["job"]), metadata=owner_md)
    assert (found.state, found.blockers[0].code) == ("waiting", "queue_paused")
    assert json_format.MessageToDict(found.blockers[0].details) == {
        "queue_id": world["queue"],
        "queue_name": "ctl",
    }
    done = project_stub.ExplainJob(pb.ExplainJobRequest(id=world["failed"]), metadata=owner_md)
    assert (done.state, done.timings.attempts) == ("finished", 1)
    assert done.timings.HasField("total_seconds")
    purged = project_stub.PurgeQueue(
        pb.PurgeQueueRequest(id=world["queue"], confirm_name="ctl"), metadata=owner_md
    )
    assert purged.count == 1
    events = project_stub.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=owner_md)
    assert [(e.action, e.count if e.HasField("count") else None) for e in events.events] == [
        ("queue.purge", 1),
        ("queue.pause", None),
    ]
    only = project_stub.ListAuditEvents(
        pb.ListAuditEventsRequest(action="queue.pause"), metadata=owner_md
    )
    assert [e.action for e in only.events] == ["queue.pause"]
    bad = rpc_error(
        project_stub.ListAuditEvents, pb.ListAuditEventsRequest(action="nope"), metadata=owner_md
    )
    assert_status(bad, grpc.StatusCode.INVALID_ARGUMENT, "action")


def test_dead_letters_redrive_and_bulk(project_stub: Stub, owner_md: Metadata, world: dict) -> None:
    letters = project_stub.ListDeadLetters(
        pb.ListDeadLettersRequest(queue_id=world["queue"]), metadata=owner_md
    )
    assert letters.total == 1
    [letter] = letters.dead_letters
    assert (letter.job.id, [a.error for a in letter.attempts]) == (world["failed"], ["boom"])
    none = project_stub.ListDeadLetters(
        pb.ListDeadLettersRequest(queue_id=world["queue"], filter=pb.JobFilter(error="nope")),
        metadata=owner_md,
    )
    assert none.total == 0
    dry = project_stub.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(queue_id=world["queue"]), metadata=owner_md
    )
    assert (dry.dry_run, dry.count, dry.redrive_id, dry.jobs[0].job_id) == (True, 1, "", "")
    real = project_stub.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(queue_id=world["queue"], dry_run=False, max_per_second=2),
        metadata=owner_md,
    )
    assert (real.dry_run, real.count, real.jobs[0].original_id) == (False, 1, world["failed"])
    assert real.redrive_id and real.jobs[0].job_id
    cancelled = project_stub.BulkCancelJobs(
        pb.BulkJobsRequest(queue_id=world["queue"], filter=pb.JobFilter(job_type="fail")),
        metadata=owner_md,
    )
    assert (cancelled.matched, cancelled.changed) == (1, 1), "the redriven job"
    retried = project_stub.BulkRetryJobs(
        pb.BulkJobsRequest(queue_id=world["queue"]), metadata=owner_md
    )
    assert (retried.matched, retried.changed) == (1, 1), "the original, failed"
    bad = rpc_error(
        project_stub.BulkRetryJobs,
        pb.BulkJobsRequest(queue_id=world["queue"], statuses=[pb.SUCCEEDED]),
        metadata=owner_md,
    )
    assert_status(bad, grpc.StatusCode.INVALID_ARGUMENT, "status")
    slow = rpc_error(
        project_stub.RedriveDeadLetters,
        pb.RedriveDeadLettersRequest(queue_id=world["queue"], max_per_second=-1),
        metadata=owner_md,
    )
    assert_status(slow, grpc.StatusCode.INVALID_ARGUMENT, "max_per_second")


def test_queue_policies(project_stub: Stub, owner_md: Metadata, world: dict) -> None:
    policy = {
        "max_dispatches_per_second": 2.5,
        "burst": 3,
        "job_types": [{"job_type": "sleep", "max_concurrent_jobs": 1}],
    }
    stored = project_stub.SetQueuePolicy(
        pb.SetQueuePolicyRequest(id=world["queue"], policy=_struct(policy)), metadata=owner_md
    )
    assert json_format.MessageToDict(stored.policy) == policy
    got = project_stub.GetQueuePolicy(
        pb.GetQueuePolicyRequest(id=world["queue"]), metadata=owner_md
    )
    assert json_format.MessageToDict(got.policy) == policy
    bad = rpc_error(
        project_stub.SetQueuePolicy,
        pb.SetQueuePolicyRequest(id=world["queue"], policy=_struct({"burst": 1.5})),
        metadata=owner_md,
    )
    assert_status(bad, grpc.StatusCode.INVALID_ARGUMENT, "policy.burst")
