"""gRPC load client: C channels x L concurrent SubmitJob loops, bounded in time and count.

``python -m benchmarks.grpc_client --targets H:P,H:P --seconds 10 ...`` prints one
JSON object: calls, calls_per_s, p50_ms, p99_ms and error counts.  Channels are
spread round-robin over the targets (one port per server process), so the load
splits evenly and deterministically.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from google.protobuf import struct_pb2

from benchmarks.stats import percentile
from grpc_service.gen import job_queue_pb2 as pb
from grpc_service.gen import job_queue_pb2_grpc as pb_grpc

CALL_TIMEOUT = 5.0


@dataclass
class Tally:
    """What the loops of one phase observed."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def calls(self) -> int:
        """Calls answered OK."""
        return len(self.latencies_ms)


async def _loop(
    stub: pb_grpc.JobQueueServiceStub,
    request: pb.SubmitJobRequest,
    metadata: tuple[tuple[str, str], ...],
    deadline: float,
    max_calls: int,
    tally: Tally,
) -> None:
    while time.perf_counter() < deadline and tally.calls + sum(tally.errors.values()) < max_calls:
        started = time.perf_counter()
        try:
            await stub.SubmitJob(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            tally.errors[exc.code().name] += 1
            continue
        tally.latencies_ms.append((time.perf_counter() - started) * 1000.0)


async def _phase(
    stubs: list[pb_grpc.JobQueueServiceStub],
    loops: int,
    seconds: float,
    max_calls: int,
    request: pb.SubmitJobRequest,
    metadata: tuple[tuple[str, str], ...],
) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _loop(stub, request, metadata, deadline, max_calls, tally)
            for stub in stubs
            for _ in range(loops)
        )
    )
    return tally, time.perf_counter() - started


async def _main(args: argparse.Namespace) -> dict[str, object]:
    targets = args.targets.split(",")
    channels = [grpc.aio.insecure_channel(targets[i % len(targets)]) for i in range(args.channels)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(channel.channel_ready() for channel in channels)), timeout=30
        )
        stubs = [pb_grpc.JobQueueServiceStub(channel) for channel in channels]
        payload = struct_pb2.Value(
            struct_value=struct_pb2.Struct(fields={"n": struct_pb2.Value(number_value=1)})
        )
        request = pb.SubmitJobRequest(queue_id=args.queue_id, job_type="echo", payload=payload)
        metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
        warmup, _ = await _phase(stubs, args.loops, args.warmup, args.max_calls, request, metadata)
        tally, elapsed = await _phase(
            stubs, args.loops, args.seconds, args.max_calls, request, metadata
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return {
        "calls": tally.calls,
        "warmup_calls": warmup.calls,
        "seconds": elapsed,
        "calls_per_s": tally.calls / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(tally.latencies_ms, 50),
        "p99_ms": percentile(tally.latencies_ms, 99),
        "errors": dict(tally.errors),
    }


def main() -> None:
    """Parse options, run the load, print the JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", required=True, help="comma-separated host:port list")
    parser.add_argument("--queue-id", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-calls", type=int, default=2_000_000)
    print(json.dumps(asyncio.run(_main(parser.parse_args()))))


if __name__ == "__main__":
    main()
