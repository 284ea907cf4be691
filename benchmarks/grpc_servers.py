"""gRPC servers for the benchmark, one process each: TaskForge's or the raw baseline.

``python -m benchmarks.grpc_servers taskforge --port P --threads T`` serves
TaskForge's ``create_server`` (auth interceptor, servicer, SQL, publish) with a
thread pool of T; ``... baseline ...`` serves only ``SubmitJob`` from the project's
generated stubs with the raw handler of perf-anchors §1f: one INSERT + commit,
then ``apply_async``.  Both stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import uuid
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format

from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

BASE_QUEUE = "bench.grpc"


class BaselineServicer(pb_grpc.JobQueueServiceServicer):
    """Only SubmitJob: insert, commit, apply_async (no auth, no validation)."""

    def __init__(self) -> None:
        """Connect to ``$DATABASE_URL`` and make sure the table exists."""
        from benchmarks.baseline_db import ensure_table, make_engine

        self.engine = make_engine()
        ensure_table(self.engine)

    def SubmitJob(
        self, request: pb.SubmitJobRequest, context: grpc.ServicerContext
    ) -> pb.SubmitJobResponse:
        """Store the job and publish its message."""
        from benchmarks.baseline_celery import count
        from benchmarks.baseline_db import bench_jobs

        job_id = str(uuid.uuid4())
        payload = (
            json.dumps(json_format.MessageToDict(request.payload))
            if request.HasField("payload")
            else None
        )
        with self.engine.begin() as connection:
            connection.execute(
                bench_jobs.insert().values(
                    id=job_id,
                    queue=BASE_QUEUE,
                    job_type=request.job_type,
                    payload=payload,
                    status="pending",
                    created_at=datetime.now(UTC),
                )
            )
        count.apply_async(args=[job_id], queue=BASE_QUEUE)
        return pb.SubmitJobResponse(
            job=pb.Job(
                id=job_id, queue_id=request.queue_id, job_type=request.job_type, status=pb.PENDING
            )
        )


def _taskforge_server(port: int, threads: int) -> grpc.Server:
    import grpc_service.server as tf_server
    from app.config import load_settings
    from app.heap import freeze_startup_objects

    # The benchmark compares equal topologies: TaskForge's pool size is set per run
    # (its module default is 16 threads per process).
    tf_server.MAX_WORKERS = threads
    server, _ = tf_server.create_server(load_settings(), f"127.0.0.1:{port}")
    freeze_startup_objects()  # as `taskforge grpc` does once it serves (app.heap)
    return server


def _baseline_server(port: int, threads: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    pb_grpc.add_JobQueueServiceServicer_to_server(BaselineServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["taskforge", "baseline"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    build = _taskforge_server if args.side == "taskforge" else _baseline_server
    server = build(args.port, args.threads)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    stop.wait()
    server.stop(2.0).wait()


if __name__ == "__main__":
    main()
