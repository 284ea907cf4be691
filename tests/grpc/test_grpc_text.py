"""Text SQL cannot store is INVALID_ARGUMENT on every RPC that stores client text.

A NUL character is a valid proto string, so it reaches the services, which refuse
it (``app.services.validation``) exactly as they do for REST.  An unpaired
surrogate cannot be encoded as UTF-8; a client can only send its WTF-8 bytes,
which do not parse as a proto string.  Before, SQLite stored the NUL, PostgreSQL
answered INTERNAL, and the unparsable message answered INTERNAL on both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from flask.testing import FlaskClient
from google.protobuf import json_format
from grpcsupport import Metadata, assert_status, rpc_error
from sqlalchemy import func, select

from app.config import Settings
from app.db import session_scope
from app.models import Job, Project, Queue, Worker
from grpc_service.gen import job_queue_pb2 as pb
from tests.conftest import Account

MARK = "@@@"
# U+D800 as WTF-8/CESU-8: what a client that does not check its strings sends.
LONE_SURROGATE = b"\xed\xa0\x80"
NUL_TEXT = "a\x00b"

# RPC -> (request type, fields with MARK where the text under test goes).
CASES: dict[str, tuple[str, type[Any], dict[str, Any]]] = {
    "CreateQueue name": ("CreateQueue", pb.CreateQueueRequest, {"name": MARK}),
    "CreateQueue description": (
        "CreateQueue",
        pb.CreateQueueRequest,
        {"name": "q1", "description": MARK},
    ),
    "CreateQueue settings key": (
        "CreateQueue",
        pb.CreateQueueRequest,
        {"name": "q2", "settings": {MARK: 1}},
    ),
    "CreateQueue settings value": (
        "CreateQueue",
        pb.CreateQueueRequest,
        {"name": "q3", "settings": {"worker_type": MARK}},
    ),
    "UpdateQueue name": ("UpdateQueue", pb.UpdateQueueRequest, {"id": "{queue}", "name": MARK}),
    "UpdateQueue description": (
        "UpdateQueue",
        pb.UpdateQueueRequest,
        {"id": "{queue}", "description": MARK},
    ),
    "UpdateQueue settings": (
        "UpdateQueue",
        pb.UpdateQueueRequest,
        {"id": "{queue}", "settings": {MARK: 2}},
    ),
    "SubmitJob job_type": (
        "SubmitJob",
        pb.SubmitJobRequest,
        {"queue_id": "{queue}", "job_type": MARK},
    ),
    "SubmitJob payload value": (
        "SubmitJob",
        pb.SubmitJobRequest,
        {"queue_id": "{queue}", "job_type": "echo", "payload": {"deep": [MARK]}},
    ),
    "SubmitJob payload key": (
        "SubmitJob",
        pb.SubmitJobRequest,
        {"queue_id": "{queue}", "job_type": "echo", "payload": {MARK: 1}},
    ),
    "SubmitJob queue_name": (
        "SubmitJob",
        pb.SubmitJobRequest,
        {"queue_name": MARK, "job_type": "echo"},
    ),
    "SubmitJob idempotency_key": (
        "SubmitJob",
        pb.SubmitJobRequest,
        {"queue_id": "{queue}", "job_type": "echo", "idempotency_key": MARK},
    ),
    "SubmitJobs payload": (
        "SubmitJobs",
        pb.SubmitJobsRequest,
        {"jobs": [{"queue_id": "{queue}", "job_type": "echo", "payload": MARK}]},
    ),
    "RegisterWorker name": ("RegisterWorker", pb.RegisterWorkerRequest, {"name": MARK}),
    "RegisterWorker capabilities": (
        "RegisterWorker",
        pb.RegisterWorkerRequest,
        {"name": "w", "capabilities": {"gpu": MARK}},
    ),
    "Heartbeat metadata key": (
        "Heartbeat",
        pb.HeartbeatRequest,
        {"id": "{worker}", "metadata": {MARK: "1"}},
    ),
    "Heartbeat metadata value": (
        "Heartbeat",
        pb.HeartbeatRequest,
        {"id": "{worker}", "metadata": {"load": MARK}},
    ),
}


def _fill(fields: Any, ids: dict[str, str], text: str) -> Any:
    """Put the real ids and ``text`` (for MARK) into a copy of ``fields``."""

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {fill(key): fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, str):
            return text if node == MARK else node.format(**ids)
        return node

    return fill(copy.deepcopy(fields))


@pytest.fixture
def ids(client: FlaskClient, owner: Account, queue: dict[str, Any]) -> dict[str, str]:
    """A queue and a worker of ``owner``'s organization to address."""
    worker = client.post("/api/v1/workers", json={"name": "w0"}, headers=owner.headers)
    assert worker.status_code == 201, worker.json
    return {"queue": queue["id"], "worker": worker.json["id"]}


@pytest.fixture
def call_raw(grpc_channel: grpc.Channel, owner_md: Metadata) -> Callable[[str, bytes], Any]:
    """Send serialized request bytes to a JobQueueService RPC as the owner."""

    def call(method: str, data: bytes) -> Any:
        rpc = grpc_channel.unary_unary(f"/taskforge.JobQueueService/{method}")
        return rpc(data, metadata=owner_md, timeout=30)

    return call


def _stored_rows(settings: Settings) -> tuple[int, ...]:
    with session_scope(settings.database_url) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Queue, Project, Job, Worker)
        )


def _worker_metadata(settings: Settings) -> list[Any]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(Worker.heartbeat_metadata)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_nul_is_invalid_argument_and_nothing_is_stored(
    case: str,
    ids: dict[str, str],
    call_raw: Callable[[str, bytes], Any],
    settings: Settings,
) -> None:
    method, request_type, fields = CASES[case]
    request = json_format.ParseDict(_fill(fields, ids, NUL_TEXT), request_type())
    before, metadata = _stored_rows(settings), _worker_metadata(settings)
    error = rpc_error(call_raw, method, request.SerializeToString())
    # job_type and idempotency_key have narrower rules of their own, which name them.
    field = next((f for f in ("job_type", "idempotency_key") if case.endswith(f)), "NUL")
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, field)
    assert _stored_rows(settings) == before
    assert _worker_metadata(settings) == metadata


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lone_surrogate_is_invalid_argument(
    case: str,
    ids: dict[str, str],
    call_raw: Callable[[str, bytes], Any],
    settings: Settings,
) -> None:
    method, request_type, fields = CASES[case]
    data = json_format.ParseDict(_fill(fields, ids, MARK), request_type()).SerializeToString()
    assert data.count(MARK.encode()) == 1
    before = _stored_rows(settings)
    error = rpc_error(call_raw, method, data.replace(MARK.encode(), LONE_SURROGATE))
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "UTF-8", "surrogate")
    assert _stored_rows(settings) == before


def test_the_same_requests_with_plain_text_are_accepted(
    ids: dict[str, str], call_raw: Callable[[str, bytes], Any]
) -> None:
    """The cases above fail because of their text, not because they are malformed."""
    plain = {
        "SubmitJob job_type": "echo",
        "SubmitJob queue_name": "default-queue",
        "CreateQueue settings value": "general",
        "CreateQueue settings key": "max_attempts",
        "UpdateQueue settings": "max_attempts",
    }
    for index, case in enumerate(sorted(CASES)):
        method, request_type, fields = CASES[case]
        text = plain.get(case, f"text-{index}")
        request = json_format.ParseDict(_fill(fields, ids, text), request_type())
        call_raw(method, request.SerializeToString())
