"""WatchJob: a stream of a job's states until it finishes, bounded by the call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpcsupport import Metadata, assert_status, rpc_error

from app.config import Settings
from grpc_service import convert
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from tests.support.workers import WorkerProcess


@pytest.fixture
def submit(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, queue: dict[str, Any]
) -> Callable[..., pb.Job]:
    """Submit a job to ``queue``."""

    def submit(job_type: str = "echo", payload: Any = None) -> pb.Job:
        request = pb.SubmitJobRequest(
            queue_id=queue["id"], job_type=job_type, payload=convert.to_value(payload)
        )
        return project_stub.SubmitJob(request, metadata=owner_md).job

    return submit


def watch(
    stub: pb_grpc.JobQueueServiceStub, job_id: str, metadata: Metadata, timeout: float = 10
) -> Iterator[pb.WatchJobEvent]:
    return stub.WatchJob(pb.WatchJobRequest(id=job_id), metadata=metadata, timeout=timeout)


def test_watch_streams_until_the_job_is_finished(
    submit: Callable[..., pb.Job], project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    job = submit()
    stream = watch(project_stub, job.id, owner_md)
    first = next(stream)
    assert (first.job.id, first.job.status) == (job.id, pb.PENDING)
    project_stub.CancelJob(pb.CancelJobRequest(id=job.id), metadata=owner_md)
    rest = list(stream)
    assert [event.job.status for event in rest] == [pb.CANCELLED]


def test_watching_a_finished_job_sends_it_once(
    submit: Callable[..., pb.Job], project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    job = submit()
    project_stub.CancelJob(pb.CancelJobRequest(id=job.id), metadata=owner_md)
    events = list(watch(project_stub, job.id, owner_md))
    assert [event.job.status for event in events] == [pb.CANCELLED]


def test_watch_ends_at_the_deadline(
    submit: Callable[..., pb.Job], project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata
) -> None:
    stream = watch(project_stub, submit().id, owner_md, timeout=0.8)
    assert next(stream).job.status == pb.PENDING
    started = time.monotonic()
    error = rpc_error(list, stream)
    assert_status(error, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("job_id", "metadata", "code"),
    [
        ("nope", None, grpc.StatusCode.UNAUTHENTICATED),
        ("nope", "owner", grpc.StatusCode.INVALID_ARGUMENT),
        ("00000000-0000-0000-0000-000000000000", "owner", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_watch_errors(
    project_stub: pb_grpc.JobQueueServiceStub,
    owner_md: Metadata,
    job_id: str,
    metadata: str | None,
    code: grpc.StatusCode,
) -> None:
    stream = watch(project_stub, job_id, owner_md if metadata else ())
    assert_status(rpc_error(list, stream), code)


def test_watches_are_bounded_and_release_their_slot(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    start_grpc_server: Callable[[Settings], str],
    submit: Callable[..., pb.Job],
    owner_md: Metadata,
) -> None:
    monkeypatch.setattr("grpc_service.server.WATCH_SLOTS", 1)
    job = submit()
    with grpc.insecure_channel(start_grpc_server(settings)) as channel:
        stub = pb_grpc.JobQueueServiceStub(channel)
        holder = watch(stub, job.id, owner_md)
        next(holder)
        error = rpc_error(list, watch(stub, job.id, owner_md))
        assert_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "watched")
        holder.cancel()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert next(watch(stub, job.id, owner_md, timeout=2)).job.id == job.id
                break
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the cancelled watch kept its slot"
                time.sleep(0.1)


@pytest.mark.slow
def test_watch_sees_a_real_worker_succeed(
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    submit: Callable[..., pb.Job],
    project_stub: pb_grpc.JobQueueServiceStub,
    owner_md: Metadata,
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the end-to-end watch")
    payload = {"greeting": "hello", "n": [1, 2, 3]}
    job = submit("echo", payload)
    stream = watch(project_stub, job.id, owner_md, timeout=90)
    assert next(stream).job.status == pb.PENDING
    # Started after the queue exists, the worker consumes it from the start.
    start_worker("-P", "solo")
    events = list(stream)
    assert events, "the stream ended without news of the job"
    final = events[-1].job
    assert final.status == pb.SUCCEEDED
    assert convert.from_value(final.result) == payload
    assert final.attempt_count == 1
    assert final.HasField("started_at") and final.HasField("completed_at")
    assert {event.job.status for event in events} <= {pb.PROCESSING, pb.SUCCEEDED}
