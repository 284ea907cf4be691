"""Job RPCs: SubmitJob, GetJob, ListJobs, CancelJob, RetryJob, plus SubmitJobs."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
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
from app.db import session_scope
from app.models import JobStatus, WorkerType
from app.services import jobs as job_service
from app.services.workers import register_system_worker
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def submit(
    grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata, queue: dict[str, Any]
) -> Any:
    """Submit a job to ``queue`` through the seed client; fields override the defaults."""

    def submit(**fields: Any) -> Any:
        fields = {"queue_id": queue["id"], "job_type": "echo", **fields}
        request = message(contract.SubmitJobRequest, **fields)
        return grpc_stub.SubmitJob(request, metadata=owner_md).job

    return submit


def test_submit_job_returns_the_stored_job(submit: Any, contract: Contract, queue: Any) -> None:
    payload = {"to": "ada@example.com", "n": 3, "ratio": 0.5, "tags": ["a", None, True], "x": {}}
    job = submit(payload=payload, priority=7)
    assert uuid.UUID(job.id)
    assert job.queue_id == queue["id"]
    assert job.job_type == "echo"
    assert convert.from_value(job.payload) == payload
    assert job.status == contract.JobStatus.Value("PENDING")
    assert job.priority == 7
    assert job.max_attempts == 3  # the queue's default
    assert job.attempt_count == 0
    assert job.created_at.seconds > 0 and job.updated_at.seconds > 0
    assert not job.HasField("scheduled_for") and not job.HasField("completed_at")


def test_submit_job_in_the_future_is_scheduled(submit: Any, contract: Contract) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    job = submit(scheduled_for=when.isoformat().replace("+00:00", "Z"), max_attempts=5)
    assert job.status == contract.JobStatus.Value("SCHEDULED")
    assert job.scheduled_for.ToDatetime(tzinfo=UTC) == when
    assert job.max_attempts == 5


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"job_type": "no spaces allowed"}, "job_type"),
        ({"job_type": ""}, "job_type"),
        ({"queue_id": "not-a-uuid"}, "queue_id"),
        ({"queue_id": ""}, "queue_id"),
        ({"payload": float("nan")}, "payload"),
        ({"payload": "x" * (600 * 1024)}, "payload"),
    ],
)
def test_submit_job_rejects_bad_fields_naming_them(
    submit: Any, fields: dict[str, Any], named: str
) -> None:
    assert_status(rpc_error(submit, **fields), INVALID, named)


def test_submit_job_to_an_unknown_queue_is_not_found(submit: Any) -> None:
    assert_status(rpc_error(submit, queue_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND)


def test_get_job(
    submit: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    job = submit(payload={"k": [1, 2]})
    got = grpc_stub.GetJob(contract.GetJobRequest(id=job.id), metadata=owner_md).job
    assert got == job


@pytest.mark.parametrize(
    ("job_id", "code"),
    [("nope", INVALID), ("", INVALID), (UNKNOWN_ID, grpc.StatusCode.NOT_FOUND)],
)
def test_get_job_errors(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    job_id: str,
    code: grpc.StatusCode,
) -> None:
    error = rpc_error(grpc_stub.GetJob, contract.GetJobRequest(id=job_id), metadata=owner_md)
    assert_status(error, code)


def test_list_jobs_pages_with_real_totals(
    submit: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    ids = [submit().id for _ in range(3)]
    first = grpc_stub.ListJobs(contract.ListJobsRequest(limit=2), metadata=owner_md)
    second = grpc_stub.ListJobs(contract.ListJobsRequest(limit=2, page=2), metadata=owner_md)
    assert (first.total, first.page, first.pages) == (3, 1, 2)
    assert (second.total, second.page, second.pages) == (3, 2, 2)
    assert [j.id for j in first.jobs] + [j.id for j in second.jobs] == ids[::-1]
    default = grpc_stub.ListJobs(contract.ListJobsRequest(), metadata=owner_md)
    assert (default.total, default.page, len(default.jobs)) == (3, 1, 3)


def test_list_jobs_filters_by_status_and_queue(
    submit: Any,
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    settings: Settings,
    queue: Any,
) -> None:
    failed, _pending = submit().id, submit().id
    set_job_status(settings.database_url, failed, JobStatus.FAILED)
    only_failed = grpc_stub.ListJobs(
        contract.ListJobsRequest(status=contract.JobStatus.Value("FAILED")), metadata=owner_md
    )
    assert [j.id for j in only_failed.jobs] == [failed]
    in_queue = grpc_stub.ListJobs(contract.ListJobsRequest(queue_id=queue["id"]), metadata=owner_md)
    assert in_queue.total == 2
    elsewhere = grpc_stub.ListJobs(
        contract.ListJobsRequest(queue_id=str(uuid.uuid4())), metadata=owner_md
    )
    assert elsewhere.total == 0


def test_list_jobs_walks_by_cursor(
    submit: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    ids = [submit().id for _ in range(3)]
    first = project_stub.ListJobs(pb.ListJobsRequest(limit=2), metadata=owner_md)
    rest = project_stub.ListJobs(
        pb.ListJobsRequest(limit=2, after=first.next_after), metadata=owner_md
    )
    assert [j.id for j in first.jobs] + [j.id for j in rest.jobs] == ids[::-1]
    assert (rest.total, rest.next_after) == (3, "")
    error = rpc_error(
        project_stub.ListJobs, pb.ListJobsRequest(after="nonsense"), metadata=owner_md
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT)


def test_job_counts_count_every_status_in_one_call(
    submit: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, settings: Settings
) -> None:
    submit()
    set_job_status(settings.database_url, submit().id, JobStatus.FAILED)
    counts = project_stub.GetJobCounts(pb.GetJobCountsRequest(), metadata=owner_md)
    assert (counts.pending_count, counts.failed_count, counts.total_count) == (1, 1, 2)
    error = rpc_error(project_stub.GetJobCounts, pb.GetJobCountsRequest())
    assert_status(error, grpc.StatusCode.UNAUTHENTICATED)


def test_list_jobs_filters_pending_when_asked_explicitly(
    submit: Any, project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, settings: Settings
) -> None:
    pending, failed = submit().id, submit().id
    set_job_status(settings.database_url, failed, JobStatus.FAILED)
    everything = project_stub.ListJobs(pb.ListJobsRequest(status=pb.PENDING), metadata=owner_md)
    assert everything.total == 2
    only_pending = project_stub.ListJobs(
        pb.ListJobsRequest(status=pb.PENDING, filter_status=True), metadata=owner_md
    )
    assert [j.id for j in only_pending.jobs] == [pending]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"limit": 101}, "limit"),
        ({"queue_id": "not-a-uuid"}, "queue_id"),
        ({"status": 42}, "status"),
    ],
)
def test_list_jobs_rejects_bad_arguments(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    fields: dict[str, Any],
    named: str,
) -> None:
    request = contract.ListJobsRequest(**fields)
    assert_status(rpc_error(grpc_stub.ListJobs, request, metadata=owner_md), INVALID, named)


def test_cancel_job_then_cancel_again_is_a_failed_precondition(
    submit: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata
) -> None:
    job = submit()
    response = grpc_stub.CancelJob(contract.CancelJobRequest(id=job.id), metadata=owner_md)
    assert response.success
    got = grpc_stub.GetJob(contract.GetJobRequest(id=job.id), metadata=owner_md).job
    assert got.status == contract.JobStatus.Value("CANCELLED")
    assert got.HasField("completed_at")
    error = rpc_error(grpc_stub.CancelJob, contract.CancelJobRequest(id=job.id), metadata=owner_md)
    assert_status(error, grpc.StatusCode.FAILED_PRECONDITION, "cancelled")


def test_retry_job_needs_a_failed_job(
    submit: Any,
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    settings: Settings,
) -> None:
    job = submit()
    error = rpc_error(grpc_stub.RetryJob, contract.RetryJobRequest(id=job.id), metadata=owner_md)
    assert_status(error, grpc.StatusCode.FAILED_PRECONDITION, "failed")
    set_job_status(settings.database_url, job.id, JobStatus.FAILED)
    assert grpc_stub.RetryJob(contract.RetryJobRequest(id=job.id), metadata=owner_md).success
    got = grpc_stub.GetJob(contract.GetJobRequest(id=job.id), metadata=owner_md).job
    assert got.status == contract.JobStatus.Value("PENDING")


def test_concurrent_retries_one_succeeds_the_others_fail_the_precondition(
    submit: Any,
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = submit()
    set_job_status(settings.database_url, job.id, JobStatus.FAILED)
    callers = 4
    # Every call has read the failed job before any of them writes.
    barrier = threading.Barrier(callers, timeout=20)
    real_get_job = job_service.get_job

    def get_job_then_wait(*args: Any, **kwargs: Any) -> Any:
        found = real_get_job(*args, **kwargs)
        barrier.wait()
        return found

    monkeypatch.setattr(job_service, "get_job", get_job_then_wait)

    def retry(_: int) -> grpc.StatusCode:
        try:
            grpc_stub.RetryJob(contract.RetryJobRequest(id=job.id), metadata=owner_md, timeout=30)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(callers) as pool:
        codes = sorted(pool.map(retry, range(callers)), key=lambda code: code.name)
    assert codes == [grpc.StatusCode.FAILED_PRECONDITION] * (callers - 1) + [grpc.StatusCode.OK]


@pytest.mark.parametrize("rpc", ["CancelJob", "RetryJob"])
@pytest.mark.parametrize(
    ("job_id", "code"), [("bad", INVALID), (UNKNOWN_ID, grpc.StatusCode.NOT_FOUND)]
)
def test_cancel_and_retry_errors(
    grpc_stub: SimpleNamespace,
    contract: Contract,
    owner_md: Metadata,
    rpc: str,
    job_id: str,
    code: grpc.StatusCode,
) -> None:
    request = getattr(contract, f"{rpc}Request")(id=job_id)
    assert_status(rpc_error(getattr(grpc_stub, rpc), request, metadata=owner_md), code)


def test_submitted_jobs_are_published_to_the_broker(
    submit: Any, grpc_stub: SimpleNamespace, contract: Contract, owner_md: Metadata, queue: Any
) -> None:
    submit()
    stats = grpc_stub.GetQueueStats(
        contract.GetQueueStatsRequest(id=queue["id"]), metadata=owner_md
    )
    assert stats.pending_count == 1
    stats = pb.GetQueueStatsResponse.FromString(stats.SerializeToString())
    assert stats.broker_depth == 1


def test_idempotency_key_returns_the_same_job(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    request = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo", idempotency_key="k-1")
    first = project_stub.SubmitJob(request, metadata=owner_md).job
    second = project_stub.SubmitJob(request, metadata=owner_md).job
    assert first.id == second.id


def test_submit_by_queue_name(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    request = pb.SubmitJobRequest(queue_name=queue["name"], job_type="echo")
    assert project_stub.SubmitJob(request, metadata=owner_md).job.queue_id == queue["id"]
    request = pb.SubmitJobRequest(queue_name="no-such-queue", job_type="echo")
    error = rpc_error(project_stub.SubmitJob, request, metadata=owner_md)
    assert_status(error, grpc.StatusCode.NOT_FOUND, "no-such-queue")


def test_submit_jobs_stores_a_batch_in_order(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    requests = [
        pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo", payload=convert.to_value(n))
        for n in range(5)
    ]
    response = project_stub.SubmitJobs(pb.SubmitJobsRequest(jobs=requests), metadata=owner_md)
    assert [convert.from_value(job.payload) for job in response.jobs] == list(range(5))
    listed = project_stub.ListJobs(pb.ListJobsRequest(), metadata=owner_md)
    assert listed.total == 5


def test_submit_jobs_is_all_or_nothing(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    good = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    bad = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo", priority=42)
    request = pb.SubmitJobsRequest(jobs=[good, bad, good])
    error = rpc_error(project_stub.SubmitJobs, request, metadata=owner_md)
    assert_status(error, INVALID, "jobs[1]", "priority")
    assert project_stub.ListJobs(pb.ListJobsRequest(), metadata=owner_md).total == 0


@pytest.mark.parametrize("count", [0, 1001])
def test_submit_jobs_batch_size_is_bounded(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any, count: int
) -> None:
    job = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    request = pb.SubmitJobsRequest(jobs=[job] * count)
    assert_status(rpc_error(project_stub.SubmitJobs, request, metadata=owner_md), INVALID, "jobs")


def test_submit_jobs_honours_each_jobs_idempotency_key(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any
) -> None:
    keyed = [
        pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo", idempotency_key=f"k{n}")
        for n in range(3)
    ]
    first = project_stub.SubmitJobs(pb.SubmitJobsRequest(jobs=keyed), metadata=owner_md).jobs
    fresh = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    again = project_stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=[keyed[2], fresh, keyed[0]]), metadata=owner_md
    ).jobs
    assert (again[0].id, again[2].id) == (first[2].id, first[0].id)
    assert again[1].id not in {job.id for job in first}
    assert project_stub.ListJobs(pb.ListJobsRequest(), metadata=owner_md).total == 4


def test_every_job_of_submit_jobs_counts_against_the_rate_limit(
    settings: Settings,
    start_grpc_server: Any,
    owner_md: Metadata,
    queue: Any,
) -> None:
    address = start_grpc_server(settings.replace(rate_limit_default="10 per minute"))
    job = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.JobQueueServiceStub(channel)
        assert (
            len(stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[job] * 8), metadata=owner_md).jobs) == 8
        )
        error = rpc_error(stub.SubmitJobs, pb.SubmitJobsRequest(jobs=[job] * 3), metadata=owner_md)
        assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "10 per 1 minute")


def test_a_job_type_the_queues_live_workers_lack_is_an_invalid_argument(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: Any, settings: Settings
) -> None:
    with session_scope(settings.database_url) as session:
        register_system_worker(
            session,
            hostname="plain@h",
            organization_id=None,
            worker_type=WorkerType.GENERAL,
            capabilities=None,
            concurrency=1,
            queues=[f"tf.{queue['id']}"],
            job_types=["echo"],
        )
    unknown = pb.SubmitJobRequest(queue_id=queue["id"], job_type="send_email")
    error = rpc_error(project_stub.SubmitJob, unknown, metadata=owner_md)
    assert_status(error, INVALID, "send_email", "No live worker")
    known = pb.SubmitJobRequest(queue_id=queue["id"], job_type="echo")
    batch = pb.SubmitJobsRequest(jobs=[known, unknown])
    error = rpc_error(project_stub.SubmitJobs, batch, metadata=owner_md)
    assert_status(error, INVALID, "jobs[1]", "send_email")
    assert project_stub.ListJobs(pb.ListJobsRequest(), metadata=owner_md).total == 0
