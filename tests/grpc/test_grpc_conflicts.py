"""A lost race on a queue name is FAILED_PRECONDITION, as the same duplicate found by the check.

Before, the loser's ``IntegrityError`` answered ABORTED, a code DESIGN.md §4 does not name.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpcsupport import Metadata

from app.config import Settings
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc
from tests.support.races import inserts_meet, run_together


def test_concurrent_create_queue_of_one_name_is_ok_and_failed_precondition(
    project_stub: pb_grpc.JobQueueServiceStub, owner_md: Metadata, settings: Settings
) -> None:
    def create() -> Any:
        try:
            project_stub.CreateQueue(pb.CreateQueueRequest(name="twin"), metadata=owner_md)
        except grpc.RpcError as error:
            return error.code(), error.details()
        return grpc.StatusCode.OK, ""

    with inserts_meet(settings.database_url, "queues") as barrier:
        answers = run_together(create, create)
    assert not barrier.broken, "both calls reached the insert"
    codes = sorted(code.name for code, _ in answers)
    assert codes == ["FAILED_PRECONDITION", "OK"], answers
    assert "A queue with this name already exists" in max(details for _, details in answers)
    listed = project_stub.ListQueues(pb.ListQueuesRequest(), metadata=owner_md)
    assert [queue.name for queue in listed.queues].count("twin") == 1
