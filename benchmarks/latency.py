"""Submit-to-start latency with an idle worker (prefork -c 2, pm 1).

TaskForge: ``POST /api/v1/jobs`` to gunicorn (2 sync workers); latency = the job's
``started_at`` (stamped by the worker's claim, as the task body starts) - the
wall-clock time taken right before the HTTP request.  Baseline: raw
``apply_async`` of ``bench.stamp``, whose body RPUSHes ``time.time()``; latency =
that - the time right before ``apply_async``.  Same machine, same clock.

Both sides send ``latency_submits`` jobs one after another with the same seeded
5-15 ms random gaps, after a warm-up that is waited for (the first message on a
new queue can wait for kombu's 1 s BRPOP cycle).
"""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from benchmarks.context import Context, Target
from benchmarks.procs import Proc
from benchmarks.report import Goal, Row
from benchmarks.stats import percentile
from benchmarks.tenant import Tenant, reset_jobs

BASE_QUEUE = "bench.lat"
WAIT_SECONDS = 30.0


class LatencyError(RuntimeError):
    """Jobs did not start in time."""


def _text(item: bytes | str) -> str:
    return item.decode() if isinstance(item, bytes) else item


def _gaps(ctx: Context, n: int) -> list[float]:
    rng = random.Random(ctx.config.seed)
    return [rng.uniform(0.005, 0.015) for _ in range(n)]


def _wait_for(check: Callable[[], bool], proc: Proc, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if not proc.running():
            raise LatencyError(f"{what}: worker exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise LatencyError(f"{what}: jobs not started after {WAIT_SECONDS:.0f}s")
        time.sleep(0.05)


class _Submitter:
    """POST jobs to TaskForge over http.client (gunicorn sync closes each connection)."""

    def __init__(self, port: int, tenant: Tenant) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"Authorization": tenant.auth_header, "Content-Type": "application/json"}
        self.body = json.dumps({"queue_id": tenant.queue_id, "job_type": "echo", "payload": {}})

    def submit(self) -> str:
        self.connection.request("POST", "/api/v1/jobs", self.body, self.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 201:
            raise LatencyError(f"POST /api/v1/jobs: HTTP {response.status}: {data[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
        return str(json.loads(data)["id"])

    def close(self) -> None:
        self.connection.close()


def _started_at(target: Target, ids: list[str]) -> dict[str, float]:
    from app.db import get_engine
    from app.models import Job

    wanted = [uuid.UUID(i) for i in ids]
    found: dict[str, float] = {}
    with get_engine(target.database_url).connect() as connection:
        for first in range(0, len(wanted), 200):
            rows = connection.execute(
                select(Job.id, Job.started_at).where(Job.id.in_(wanted[first : first + 200]))
            ).all()
            found.update({str(r.id): r.started_at.timestamp() for r in rows if r.started_at})
    return found


@dataclass(frozen=True)
class Latencies:
    """Submit-to-start latencies, and how long the submit call itself took (ms)."""

    to_start: list[float]
    call: list[float]


def _taskforge(ctx: Context, target: Target, gaps: list[float]) -> Latencies:
    reset_jobs(target.database_url)
    ctx.clear_broker()
    gunicorn, port = ctx.start_gunicorn("gunicorn-tf", "wsgi:app", "/healthz", target.database_url)
    worker = ctx.start_worker(
        f"tf-lat-{uuid.uuid4().hex[:4]}", "tasks.celery_app", target.database_url
    )
    submitter = _Submitter(port, target.tenant)
    try:
        warm = [submitter.submit() for _ in range(ctx.config.latency_warmup)]
        _wait_for(lambda: len(_started_at(target, warm)) == len(warm), worker, "TF warm-up")
        ctx.settle("latency TaskForge")
        sent: list[tuple[str, float]] = []
        calls: list[float] = []
        for gap in gaps:
            time.sleep(gap)
            t0 = time.time()
            sent.append((submitter.submit(), t0))
            calls.append((time.time() - t0) * 1000.0)
        ids = [job_id for job_id, _ in sent]
        _wait_for(lambda: len(_started_at(target, ids)) == len(ids), worker, "TF latency")
        started = _started_at(target, ids)
    finally:
        submitter.close()
        ctx.procs.stop(worker)
        ctx.procs.stop(gunicorn)
    return Latencies([(started[job_id] - t0) * 1000.0 for job_id, t0 in sent], calls)


def _baseline(
    ctx: Context, target: Target, gaps: list[float], extra: tuple[str, ...] = ()
) -> Latencies:
    from benchmarks.baseline_celery import STAMPS_KEY, stamp

    ctx.clear_broker()
    worker = ctx.start_worker(
        f"base-lat-{uuid.uuid4().hex[:4]}",
        "benchmarks.baseline_celery",
        target.database_url,
        "-Q",
        BASE_QUEUE,
        *extra,
    )
    client = ctx.redis()
    warmup = ctx.config.latency_warmup
    try:
        for i in range(warmup):
            stamp.apply_async(args=[-1 - i], queue=BASE_QUEUE)
        _wait_for(lambda: int(client.llen(STAMPS_KEY)) >= warmup, worker, "baseline warm-up")
        ctx.settle("latency baseline")
        sent: dict[int, float] = {}
        calls: list[float] = []
        for index, gap in enumerate(gaps):
            time.sleep(gap)
            sent[index] = time.time()
            stamp.apply_async(args=[index], queue=BASE_QUEUE)
            calls.append((time.time() - sent[index]) * 1000.0)
        total = warmup + len(gaps)
        _wait_for(lambda: int(client.llen(STAMPS_KEY)) >= total, worker, "baseline latency")
        stamps = [_text(item).split() for item in client.lrange(STAMPS_KEY, 0, -1)]
    finally:
        ctx.procs.stop(worker)
        client.close()
    started = {int(i): float(t) for i, t in stamps if int(i) >= 0}
    return Latencies([(started[i] - t0) * 1000.0 for i, t0 in sent.items()], calls)


def run(ctx: Context) -> list[Row]:
    """Run the submit-to-start benchmark on SQLite; return its rows."""
    target = ctx.sqlite
    p50 = Row("Submit-to-start latency p50", "ms", Goal("<=", 3.0, 2.0))
    p99 = Row("Submit-to-start latency p99", "ms", Goal("<=", 5.0))
    events = Row("Raw Celery submit-to-start p50, task events on (-E) vs off", "ms")
    call = Row(
        "Submit call itself, p50: TaskForge POST /api/v1/jobs response time vs raw apply_async",
        "ms",
    )
    ctx.diagnostics += [events, call]
    gaps = _gaps(ctx, ctx.config.latency_submits)
    for rep in range(ctx.config.reps):
        if rep % 2 == 0:
            base_run = _baseline(ctx, target, gaps)
            tf_run = _taskforge(ctx, target, gaps)
        else:
            tf_run = _taskforge(ctx, target, gaps)
            base_run = _baseline(ctx, target, gaps)
        tf, base = tf_run.to_start, base_run.to_start
        with_events = _baseline(ctx, target, gaps, ("-E",)).to_start
        events.add(percentile(with_events, 50), percentile(base, 50))
        call.add(percentile(tf_run.call, 50), percentile(base_run.call, 50))
        p50.add(percentile(tf, 50), percentile(base, 50))
        p99.add(percentile(tf, 99), percentile(base, 99))
        print(
            f"  latency rep {rep + 1}: TF p50 {percentile(tf, 50):.2f} ms p99 "
            f"{percentile(tf, 99):.2f} ms | base p50 {percentile(base, 50):.2f} ms "
            f"p99 {percentile(base, 99):.2f} ms",
            flush=True,
        )
    return [p50, p99]
