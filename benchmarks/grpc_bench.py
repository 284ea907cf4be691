"""gRPC ``SubmitJob`` calls/s: TaskForge's server vs a raw grpcio insert + apply_async.

Both run as ``grpc_processes`` processes x ``grpc_threads`` threads (default 2 x 2,
the topology of perf-anchors §3 goal 2), each process on its own port; the
load comes from ``benchmarks.grpc_client`` in a separate process.
"""

from __future__ import annotations

import json
import math
import subprocess
from functools import partial
from typing import Any

from benchmarks.context import PYTHON, Context, Target
from benchmarks.procs import Proc, free_port, port_open, tree_cpu_seconds, wait_until
from benchmarks.report import Goal, Row
from benchmarks.tenant import count_rows, reset_jobs


class GrpcBenchError(RuntimeError):
    """The gRPC load client failed."""


def importable() -> str | None:
    """Return None when TaskForge's gRPC server can be imported, else why not."""
    try:
        import grpc_service.server  # noqa: F401
    except Exception as exc:
        return f"grpc_service.server is not importable ({type(exc).__name__}: {exc})"
    return None


def _servers(ctx: Context, side: str, target: Target) -> tuple[list[Proc], list[str]]:
    procs: list[Proc] = []
    targets: list[str] = []
    for index in range(ctx.config.grpc_processes):
        port = free_port()
        argv = [PYTHON, "-m", "benchmarks.grpc_servers", side, "--port", str(port)]
        argv += ["--threads", str(ctx.config.grpc_threads)]
        proc = ctx.procs.start(f"grpc-{side}{index}", argv, {"DATABASE_URL": target.database_url})
        procs.append(proc)
        targets.append(f"127.0.0.1:{port}")
    for proc, address in zip(procs, targets, strict=True):
        port = int(address.rsplit(":", 1)[1])
        wait_until(partial(port_open, port), timeout=60, what=f"gRPC {side}", proc=proc)
    return procs, targets


def _load(ctx: Context, side: str, target: Target) -> dict[str, Any]:
    reset_jobs(target.database_url)
    ctx.clear_broker()
    procs, targets = _servers(ctx, side, target)
    config = ctx.config
    tenant = target.tenant
    argv = [
        PYTHON,
        "-m",
        "benchmarks.grpc_client",
        "--targets",
        ",".join(targets),
        "--queue-id",
        tenant.queue_id,
        "--token",
        tenant.token,
        "--channels",
        str(config.grpc_channels),
        "--loops",
        str(config.grpc_loops),
        "--seconds",
        str(config.grpc_seconds),
    ]
    try:
        ctx.settle(f"gRPC {side}")
        cpu_before = tree_cpu_seconds([proc.pid for proc in procs])
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=config.grpc_seconds + 120,
            check=False,
            cwd=ctx.procs.cwd,
            env=ctx.procs.base_env,
        )
        cpu = tree_cpu_seconds([proc.pid for proc in procs]) - cpu_before
    finally:
        for proc in procs:
            ctx.procs.stop(proc)
    if done.returncode != 0:
        raise GrpcBenchError(f"gRPC client ({side}) exited {done.returncode}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    served = result["calls"] + result.get("warmup_calls", 0)
    result["cpu_ms_per_call"] = cpu * 1000.0 / served if served else math.nan
    errors = result.get("errors") or {}
    if errors:
        ctx.notes.append(f"gRPC {side}: errors {errors} (rate is suspect)")
    if side == "taskforge":
        jobs, published, _ = count_rows(target.database_url)
        if published < jobs:
            ctx.notes.append(f"gRPC: {jobs - published} of {jobs} TaskForge jobs unpublished")
    return result


def run(ctx: Context, rest_rows: list[Row], skip_reason: str | None) -> list[Row]:
    """Run the gRPC benchmark on SQLite; return its rows."""
    config = ctx.config
    topology = f"{config.grpc_processes} proc x {config.grpc_threads} threads"
    calls = Row(f"gRPC SubmitJob throughput ({topology})", "calls/s", Goal(">=", 0.50, 0.70))
    p99 = Row("gRPC SubmitJob p99 latency", "ms")
    cpu = Row("gRPC server CPU per call", "ms")
    vs_rest = Row(
        "gRPC ÷ REST, TaskForge (TF column: gRPC calls/s; baseline column: TF REST req/s)",
        "",
        Goal(">=", 0.90),
    )
    rows = [calls, p99, cpu, vs_rest]
    if skip_reason:
        for row in rows:
            row.skipped = skip_reason
        return rows
    target = ctx.sqlite
    for rep in range(config.reps):
        order = ["baseline", "taskforge"] if rep % 2 == 0 else ["taskforge", "baseline"]
        got = {side: _load(ctx, side, target) for side in order}
        tf, base = got["taskforge"], got["baseline"]
        calls.add(tf["calls_per_s"], base["calls_per_s"])
        p99.add(tf["p99_ms"], base["p99_ms"])
        cpu.add(tf["cpu_ms_per_call"], base["cpu_ms_per_call"])
        print(
            f"  grpc rep {rep + 1}: TF {tf['calls_per_s']:.0f} calls/s p99 {tf['p99_ms']:.1f} ms"
            f" | base {base['calls_per_s']:.0f} calls/s p99 {base['p99_ms']:.1f} ms",
            flush=True,
        )
    rest = next((r for r in rest_rows if r.metric.startswith("REST submit throughput")), None)
    if rest is None or rest.skipped or not rest.taskforge:
        vs_rest.skipped = "needs the REST benchmark in the same run"
    else:
        for rep, grpc_rate in enumerate(calls.taskforge):
            rest_rate = rest.taskforge[rep] if rep < len(rest.taskforge) else math.nan
            vs_rest.add(grpc_rate, rest_rate)
    return rows
