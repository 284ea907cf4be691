"""REST submit: TaskForge ``POST /api/v1/jobs`` vs the minimal Flask baseline, under wrk.

Each rep starts gunicorn (2 sync workers) fresh for each side on the same database
and Redis, warms it up for a second, then loads it with ``wrk -t1 -c8 --latency``
for ``rest_seconds``.  No Celery worker runs, so the queues grow (as in
perf-anchors §1e); rows and queues are emptied before every run.  Then the same
on the first target as ``make run`` ships the API (``Context.start_gunicorn``'s
``shipped``: gthread, access log, rate limits on), both sides under its flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import wrk
from benchmarks.context import SHIPPED_RATE_LIMIT, Context, Target
from benchmarks.procs import Proc, tree_cpu_seconds
from benchmarks.report import Goal, Row
from benchmarks.tenant import count_rows, reset_jobs

TF_RATE_NOTE = "TaskForge runs with TASKFORGE_RATE_LIMIT_ENABLED=false"
SHIPPED_NOTE = (
    "REST rows 'as `make run` ships it': both sides under the API role's gunicorn flags "
    "(gthread workers x threads, access log to stdout); TaskForge with its gunicorn hooks, "
    f"Prometheus multiprocess files and rate limits on ({SHIPPED_RATE_LIMIT} per identity)"
)


@dataclass(frozen=True)
class Measured:
    """wrk's numbers plus the server's CPU per request."""

    wrk: wrk.WrkResult
    cpu_ms_per_request: float


def _load(
    ctx: Context, wrk_bin: str, server: Proc, port: int, path: str, script_name: str
) -> Measured:
    config = ctx.config
    url = f"http://127.0.0.1:{port}{path}"
    script = ctx.tmp / script_name
    ctx.settle(f"REST {script_name}")
    wrk.run(
        wrk_bin,
        url,
        script,
        seconds=config.rest_warmup_seconds,
        connections=config.wrk_connections,
        threads=config.wrk_threads,
    )
    cpu_before = tree_cpu_seconds([server.pid])
    result = wrk.run(
        wrk_bin,
        url,
        script,
        seconds=config.rest_seconds,
        connections=config.wrk_connections,
        threads=config.wrk_threads,
    )
    cpu = tree_cpu_seconds([server.pid]) - cpu_before
    return Measured(result, cpu * 1000.0 / max(1, result.requests))


def _run_taskforge(ctx: Context, target: Target, wrk_bin: str, shipped: bool) -> Measured:
    reset_jobs(target.database_url)
    ctx.clear_broker()
    proc, port = ctx.start_gunicorn(
        "gunicorn-tf", "wsgi:app", "/healthz", target.database_url, shipped=shipped
    )
    try:
        result = _load(ctx, wrk_bin, proc, port, "/api/v1/jobs", "tf_submit.lua")
    finally:
        ctx.procs.stop(proc)
    jobs, published, _ = count_rows(target.database_url)
    if published < jobs:
        ctx.notes.append(
            f"REST {target.label}: {jobs - published} of {jobs} TaskForge jobs had no "
            "published_at after the run"
        )
    return result


def _run_baseline(ctx: Context, target: Target, wrk_bin: str, shipped: bool) -> Measured:
    reset_jobs(target.database_url)
    ctx.clear_broker()
    proc, port = ctx.start_gunicorn(
        "gunicorn-base",
        "benchmarks.baseline_app:app",
        "/health",
        target.database_url,
        shipped=shipped,
    )
    try:
        return _load(ctx, wrk_bin, proc, port, "/submit", "base_submit.lua")
    finally:
        ctx.procs.stop(proc)


def _check(ctx: Context, label: str, result: wrk.WrkResult) -> None:
    if result.non_2xx or result.socket_errors:
        ctx.notes.append(
            f"REST {label}: {result.non_2xx} non-2xx responses and {result.socket_errors} "
            f"socket errors out of {result.requests} requests (rate is suspect)"
        )


def run(ctx: Context, wrk_bin: str | None, skip_reason: str | None) -> list[Row]:
    """Run the REST benchmark on every target, then as shipped on the first; return its rows."""
    rows: list[Row] = []
    runs = [(target, False) for target in ctx.targets] + [(ctx.targets[0], True)]
    for target, shipped in runs:
        label = f"{target.label}, as `make run` ships it" if shipped else target.label
        rps = Row(f"REST submit throughput, {label}", "req/s", Goal(">=", 0.50, 0.70))
        p99 = Row(f"REST submit p99 latency, {label}", "ms", Goal("<=", 3.0, 2.0))
        cpu = Row(f"REST server CPU per request, {label}", "ms", Goal("<=", 2.0, 1.4))
        rows += [rps, p99, cpu]
        if wrk_bin is None:
            rps.skipped = p99.skipped = cpu.skipped = skip_reason or "wrk missing"
            continue
        tenant = target.tenant
        wrk.write_post_script(
            ctx.tmp / "tf_submit.lua",
            {"queue_id": tenant.queue_id, "job_type": "echo", "payload": {"n": 1}},
            {"Authorization": tenant.auth_header},
        )
        wrk.write_post_script(
            ctx.tmp / "base_submit.lua", {"job_type": "echo", "payload": {"n": 1}}, {}
        )
        for rep in range(ctx.config.reps):
            # Alternate the order so a slow drift of the machine hits both sides alike.
            if rep % 2 == 0:
                base_run = _run_baseline(ctx, target, wrk_bin, shipped)
                tf_run = _run_taskforge(ctx, target, wrk_bin, shipped)
            else:
                tf_run = _run_taskforge(ctx, target, wrk_bin, shipped)
                base_run = _run_baseline(ctx, target, wrk_bin, shipped)
            tf, base = tf_run.wrk, base_run.wrk
            cpu.add(tf_run.cpu_ms_per_request, base_run.cpu_ms_per_request)
            _check(ctx, f"{label} TaskForge", tf)
            _check(ctx, f"{label} baseline", base)
            rps.add(tf.requests_per_s, base.requests_per_s)
            p99.add(tf.p99_ms, base.p99_ms)
            print(
                f"  rest {label} rep {rep + 1}: TaskForge {tf.requests_per_s:.0f} req/s "
                f"p99 {tf.p99_ms:.1f} ms | baseline {base.requests_per_s:.0f} req/s "
                f"p99 {base.p99_ms:.1f} ms",
                flush=True,
            )
    for note in (TF_RATE_NOTE, SHIPPED_NOTE):
        if note not in ctx.notes:
            ctx.notes.append(note)
    return rows
