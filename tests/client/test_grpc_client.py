"""The gRPC client over a real channel: results as the REST client's, errors as its classes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from flask.testing import FlaskClient

import taskforge_client as tfc
from app.config import Settings
from app.redis_server import free_port
from examples.celery_app import tasks as example
from grpc_service.server import create_server
from taskforge_client.celery import submit_task
from taskforge_client.grpc import GrpcClient
from taskforge_client.grpc.errors import error_from_rpc
from tests.client.conftest import Signup, Stack
from tests.conftest import Account


@pytest.fixture
def grpc_target(settings: Settings) -> Iterator[str]:
    """An in-process gRPC server on the test's services; its address."""
    server, port = create_server(settings)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait()


@pytest.fixture
def rpc(grpc_target: str, owner: Account) -> Iterator[GrpcClient]:
    """A gRPC client acting as ``owner``."""
    with GrpcClient(grpc_target, token=owner.access_token) as client:
        yield client


def test_queue_and_job_calls_return_the_sdk_models(rpc: GrpcClient) -> None:
    queue = rpc.create_queue("grpc", description="by rpc", settings={"max_attempts": 2})
    assert isinstance(queue, tfc.Queue) and queue.settings == {"max_attempts": 2}
    assert rpc.get_queue(queue.id) == queue
    assert [q.name for q in rpc.list_queues().items] == ["grpc"]
    changed = rpc.update_queue(queue, priority=5, description="")
    assert (changed.priority, changed.description, changed.name) == (5, None, "grpc")
    assert rpc.pause_queue(queue).is_active is False
    assert rpc.resume_queue(queue).is_active is True

    later = datetime.now(UTC) + timedelta(hours=1)
    job = rpc.submit_job("grpc", "echo", {"n": 1, "x": [1.5, True, None]}, scheduled_for=later)
    assert isinstance(job, tfc.Job) and job.status is tfc.JobStatus.SCHEDULED
    assert job.payload == {"n": 1, "x": [1.5, True, None]} and job.max_attempts == 2
    assert rpc.get_job(job.id) == job
    page = rpc.list_jobs(queue=queue, status="scheduled")
    assert [j.id for j in page.items] == [job.id] and page.total == 1
    assert rpc.list_jobs(status=tfc.JobStatus.PENDING).total == 0
    assert rpc.queue_stats(queue).scheduled_count == 1
    assert rpc.job_counts()[tfc.JobStatus.SCHEDULED] == 1
    second = rpc.submit_job("grpc", "echo", {"n": 2}, scheduled_for=later)
    first_page = rpc.list_jobs(limit=1)
    after = rpc.list_jobs(limit=1, after=first_page.next_after)
    assert [j.id for j in first_page.items + after.items] == [second.id, job.id]
    rpc.cancel_job(job)
    assert rpc.get_job(job).status is tfc.JobStatus.CANCELLED
    [final] = list(rpc.watch_job(job, timeout=10))
    assert final.status is tfc.JobStatus.CANCELLED


def test_the_same_idempotency_key_returns_the_same_job(rpc: GrpcClient) -> None:
    rpc.create_queue("idem")
    first = rpc.submit_job("idem", "echo", 1, idempotency_key="k-1")
    assert rpc.submit_job("idem", "echo", 1, idempotency_key="k-1").id == first.id
    assert rpc.submit_job("idem", "echo", 1).id != first.id


def test_status_codes_raise_the_sdk_errors(
    rpc: GrpcClient, grpc_target: str, client: FlaskClient, owner: Account
) -> None:
    with pytest.raises(tfc.ValidationError):
        rpc.create_queue("")
    with pytest.raises(tfc.NotFound):
        rpc.get_job("00000000-0000-0000-0000-000000000000")
    queue = rpc.create_queue("errs")
    with pytest.raises(tfc.Conflict):
        rpc.retry_job(rpc.submit_job(queue, "echo", 1))
    with GrpcClient(grpc_target) as anonymous, pytest.raises(tfc.Unauthenticated):
        anonymous.list_queues()
    reader = client.post(
        "/api/v1/api-keys", json={"name": "r", "scopes": ["job:read"]}, headers=owner.headers
    ).json["key"]
    with GrpcClient(grpc_target, api_key=reader) as keyed:
        assert keyed.list_jobs().total == 1
        with pytest.raises(tfc.PermissionDenied):
            keyed.create_queue("nope")


def test_rate_limits_raise_rate_limited_with_retry_after(
    settings: Settings, owner: Account
) -> None:
    server, port = create_server(settings.replace(rate_limit_default="2 per minute"))
    server.start()
    try:
        with (
            GrpcClient(f"127.0.0.1:{port}", token=owner.access_token) as rpc,
            pytest.raises(tfc.RateLimited) as caught,
        ):
            for _ in range(3):
                rpc.list_queues()
    finally:
        server.stop(None).wait()
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60


def test_an_unreachable_server_is_unavailable() -> None:
    with (
        GrpcClient(f"127.0.0.1:{free_port()}", token="t", timeout=5) as rpc,
        pytest.raises(tfc.Unavailable),
    ):
        rpc.list_queues()


def test_every_mapped_status_code_has_its_class() -> None:
    class Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return "details"

        def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("retry-after", "7"),)

    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: tfc.ValidationError,
        grpc.StatusCode.UNAUTHENTICATED: tfc.Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: tfc.PermissionDenied,
        grpc.StatusCode.NOT_FOUND: tfc.NotFound,
        grpc.StatusCode.FAILED_PRECONDITION: tfc.Conflict,
        grpc.StatusCode.RESOURCE_EXHAUSTED: tfc.RateLimited,
        grpc.StatusCode.UNAVAILABLE: tfc.Unavailable,
        grpc.StatusCode.INTERNAL: tfc.ServerError,
        grpc.StatusCode.DEADLINE_EXCEEDED: tfc.TransportError,
    }
    for code, cls in expected.items():
        error = error_from_rpc(Failed(code))
        assert type(error) is cls, code
        assert (error.message, error.retry_after) == ("details", 7.0)


@pytest.mark.slow
@pytest.mark.real_workers
def test_a_job_submitted_over_grpc_runs_on_the_stack(
    stack: Stack, signup: Callable[..., Signup]
) -> None:
    owner = signup(stack.url)
    owner.client.queues.create("rpc-run")
    with GrpcClient(stack.grpc.target, token=owner.client.credentials.access_token) as rpc:
        job = rpc.submit_job("rpc-run", "echo", {"via": "grpc"})
        seen = list(rpc.watch_job(job, timeout=60))
    assert seen[-1].status is tfc.JobStatus.SUCCEEDED, stack.logs()
    assert seen[-1].result == {"via": "grpc"}
    assert owner.client.jobs.get(job.id).result == {"via": "grpc"}


def test_a_celery_task_is_submitted_over_grpc_as_over_rest(rpc: GrpcClient) -> None:
    queue = rpc.create_queue("celery-grpc", settings={"max_attempts": 2})
    job = submit_task(rpc, example.add, [2, 3], {"z": None}, queue=queue, priority=7)
    assert (job.job_type, job.payload) == (
        example.add.name,
        {"args": [2, 3], "kwargs": {"z": None}},
    )
    assert (job.max_attempts, job.priority) == (4, 7), "max_retries + 1, as over REST"
    assert rpc.get_job(job.id) == job
    by_name = submit_task(rpc, "reports.greet", ["Ada"], queue="celery-grpc", idempotency_key="g")
    assert (by_name.job_type, by_name.max_attempts) == ("reports.greet", 2), "the queue's default"
    again = submit_task(rpc, "reports.greet", ["Ada"], queue="celery-grpc", idempotency_key="g")
    assert again.id == by_name.id
