"""End-to-end no-op throughput: pre-enqueue N jobs, start worker(s), time the drain.

TaskForge: N ``echo`` jobs are submitted in-process through the service layer
(``submit_jobs``, 500 per transaction), so each is a SQL row whose message the
publish-after-commit hook sent to ``tf.<queue id>`` and stamped ``published_at``.
Then ``celery -A tasks.celery_app worker`` (prefork -c 2, pm 1) drains them; the
rate is N ÷ (last ``completed_at`` - first ``completed_at``), so startup is excluded.

Baseline: N ``bench.count`` tasks published with kombu's ``Producer.batch`` and
drained by the same worker command on ``benchmarks.baseline_celery``; each task
RPUSHes its completion time, and the rate is computed the same way.

It runs on SQLite and, when the run has one, on PostgreSQL (each with its own
pairs of raw Celery drains, so ratios stay paired within a rep); on PostgreSQL
the 1 vs 2 worker rows show how TaskForge scales against raw Celery's own scaling
in the same run.  The pre-enqueue itself is timed too: TaskForge's bulk submit against the
``Producer.batch`` baseline (perf-anchors §3 goal 3, bulk path).  The worker
processes' CPU per job is measured from the first completion on.  A diagnostic
drain reruns the baseline with ``-E`` (task events on, as TaskForge's
``celeryconfig.py`` sets), to show what events cost the consumer loop.

A second diagnostic, on each database, holds TaskForge to a raw Celery task that
tracks its own job in SQL the least costly way: it claims its row and records its
success, one autocommitted compare-and-set ``UPDATE`` each, on a table with only a
primary key (``bench.tracked``).  The must compares TaskForge with a task that
writes nothing; this row shows how much of the gap is the SQL itself.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from benchmarks.context import Context, Target
from benchmarks.procs import Proc, tree_cpu_seconds
from benchmarks.report import Goal, Row
from benchmarks.tenant import Tenant, reset_jobs

BATCH = 500
BASE_QUEUE = "bench.e2e"
TRACKED_QUEUE = "bench.e2e.tracked"
# How often a drain asks whether it is done.  The rate comes from the completion
# times, not from these polls, so they only need to notice the end; but each
# TaskForge poll counts the jobs by status in SQL (3-4 ms of PostgreSQL's CPU
# at 5,000 jobs), on the cores the drain runs on, where raw Celery's is one
# LLEN.  At 0.1 s that cost TaskForge's PostgreSQL drain about 1.5%.
POLL_SECONDS = 0.5


class DrainError(RuntimeError):
    """The queue did not drain in time."""


@dataclass(frozen=True)
class Drain:
    """One drain: pre-enqueue rate and drain rate (jobs/s)."""

    enqueue_per_s: float
    drain_per_s: float
    cpu_ms_per_job: float


def _deadline(n: int, workers: int) -> float:
    # Generous but bounded: 50 jobs/s per worker at worst, never under 2 minutes.
    return time.monotonic() + max(120.0, n / (50.0 * workers))


def submit_echo_jobs(tenant: Tenant, redis_url: str, n: int) -> float:
    """Submit ``n`` echo jobs through ``submit_jobs``, publishing to ``redis_url``; return s."""
    from app.db import session_scope
    from app.services.auth import actor_for_user_id
    from app.services.jobs import submit_jobs
    from tasks.publisher import install

    install(tenant.database_url, redis_url)  # publish to this tenant's DB and that Redis
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        specs = [
            {"job_type": "echo", "payload": {"i": i}, "queue_id": tenant.queue_id}
            for i in range(first, min(n, first + BATCH))
        ]
        with session_scope(tenant.database_url) as session:
            actor = actor_for_user_id(session, tenant.user_id)
            submit_jobs(session, actor=actor, jobs=specs)
    return time.perf_counter() - started


def tf_enqueue(ctx: Context, target: Target, n: int) -> float:
    """Submit ``n`` echo jobs through ``submit_jobs``; return jobs/s (insert + publish)."""
    tenant = target.tenant
    elapsed = submit_echo_jobs(tenant, ctx.redis_url, n)
    depth = ctx.queue_depth(tenant.celery_queue)
    if depth != n:
        raise DrainError(f"TaskForge enqueue: {depth} messages in {tenant.celery_queue}, not {n}")
    return n / elapsed


def _tf_finished(target: Target) -> tuple[int, int]:
    from app.db import get_engine
    from app.models import Job, JobStatus

    with get_engine(target.database_url).connect() as connection:
        rows = connection.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    counts = {status: int(n) for status, n in rows}
    done = counts.get(JobStatus.SUCCEEDED, 0)
    failed = counts.get(JobStatus.FAILED, 0)
    return done, failed


def _tf_span(target: Target) -> float:
    from app.db import get_engine
    from app.models import Job

    with get_engine(target.database_url).connect() as connection:
        first, last = connection.execute(
            select(func.min(Job.completed_at), func.max(Job.completed_at))
        ).one()
    if first is None or last is None:
        return math.nan
    if isinstance(first, str):  # in case an aggregate comes back as SQLite text
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return float((last - first).total_seconds())


def _wait(procs: list[Proc], done: Callable[[], int], n: int, workers: int, what: str) -> float:
    """Poll until ``n`` are done; return the workers' CPU ms per job after the first one."""
    deadline = _deadline(n, workers)
    pids = [proc.pid for proc in procs]
    first: tuple[int, float] | None = None
    while True:
        finished = done()
        if first is None and finished > 0:
            first = (finished, tree_cpu_seconds(pids))
        if finished >= n:
            assert first is not None
            jobs = finished - first[0]
            cpu = tree_cpu_seconds(pids) - first[1]
            return cpu * 1000.0 / jobs if jobs > 0 else math.nan
        for proc in procs:
            if not proc.running():
                raise DrainError(f"{what}: worker {proc.name} exited:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise DrainError(f"{what}: only {finished} of {n} done before the deadline")
        time.sleep(POLL_SECONDS)


def tf_drain(ctx: Context, target: Target, n: int, workers: int) -> Drain:
    """Enqueue ``n`` TaskForge jobs, drain them with ``workers`` workers, measure both."""
    reset_jobs(target.database_url)
    ctx.clear_broker()
    enqueue_rate = tf_enqueue(ctx, target, n)
    ctx.settle(f"e2e TaskForge {workers}w")
    procs = [
        ctx.start_worker(
            f"tf-worker{w}-{uuid.uuid4().hex[:4]}", "tasks.celery_app", target.database_url
        )
        for w in range(workers)
    ]
    failures: list[int] = []

    def done() -> int:
        succeeded, failed = _tf_finished(target)
        failures[:] = [failed]
        return succeeded + failed

    try:
        cpu_per_job = _wait(procs, done, n, workers, "TaskForge drain")
    finally:
        for proc in procs:
            ctx.procs.stop(proc)
    if failures and failures[0]:
        ctx.notes.append(f"e2e: {failures[0]} TaskForge echo jobs failed")
    span = _tf_span(target)
    return Drain(enqueue_rate, n / span if span > 0 else math.nan, cpu_per_job)


def _publish(task: Any, arguments: list[Any], queue: str) -> float:
    """Publish one ``task`` message per argument inside ``Producer.batch``; return seconds."""
    from benchmarks.baseline_celery import app

    started = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
        for argument in arguments:
            task.apply_async(args=[argument], queue=queue, producer=producer)
    return time.perf_counter() - started


def publish_baseline(n: int) -> float:
    """Publish ``n`` baseline tasks inside ``Producer.batch``; return the seconds it took."""
    from benchmarks.baseline_celery import count

    return _publish(count, list(range(n)), BASE_QUEUE)


def _enqueued(ctx: Context, queue: str, n: int, elapsed: float) -> float:
    """Check that ``queue`` holds the ``n`` messages just published; return them per second."""
    depth = ctx.queue_depth(queue)
    if depth != n:
        raise DrainError(f"baseline enqueue: {depth} messages in {queue}, not {n}")
    return n / elapsed


def base_enqueue(ctx: Context, n: int) -> float:
    """Publish ``n`` baseline tasks inside ``Producer.batch``; return tasks/s."""
    return _enqueued(ctx, BASE_QUEUE, n, publish_baseline(n))


def _start_base_worker(ctx: Context, target: Target, name: str, queue: str, *extra: str) -> Proc:
    """Start one raw Celery worker of ``benchmarks.baseline_celery`` on ``queue``."""
    return ctx.start_worker(
        f"{name}-{uuid.uuid4().hex[:4]}",
        "benchmarks.baseline_celery",
        target.database_url,
        "-Q",
        queue,
        *extra,
    )


def base_drain(
    ctx: Context, target: Target, n: int, workers: int, extra: tuple[str, ...] = ()
) -> Drain:
    """Enqueue ``n`` baseline tasks, drain them with ``workers`` workers, measure both."""
    from benchmarks.baseline_celery import DONE_KEY

    ctx.clear_broker()
    enqueue_rate = base_enqueue(ctx, n)
    ctx.settle(f"e2e baseline {workers}w")
    client = ctx.redis()
    procs = [
        _start_base_worker(ctx, target, f"base-worker{w}", BASE_QUEUE, *extra)
        for w in range(workers)
    ]
    try:
        cpu_per_job = _wait(procs, lambda: int(client.llen(DONE_KEY)), n, workers, "baseline drain")
        stamps = [float(x) for x in client.lrange(DONE_KEY, 0, -1)]
    finally:
        for proc in procs:
            ctx.procs.stop(proc)
        client.close()
    span = max(stamps) - min(stamps)
    return Drain(enqueue_rate, n / span if span > 0 else math.nan, cpu_per_job)


def tracked_drain(ctx: Context, target: Target, n: int) -> Drain:
    """Drain ``n`` raw Celery tasks that claim and finish their own rows, with one worker."""
    from benchmarks.baseline_celery import tracked
    from benchmarks.baseline_db import bench_tracked, make_engine

    engine = make_engine(target.database_url)
    try:
        bench_tracked.create(engine, checkfirst=True)
        ids = [str(uuid.uuid4()) for _ in range(n)]
        with engine.begin() as connection:
            connection.execute(delete(bench_tracked))
            connection.execute(insert(bench_tracked), [{"id": i, "status": "pending"} for i in ids])
        ctx.clear_broker()
        enqueue_rate = _enqueued(ctx, TRACKED_QUEUE, n, _publish(tracked, ids, TRACKED_QUEUE))
        ctx.settle("e2e tracked baseline 1w")
        proc = _start_base_worker(ctx, target, "tracked-worker", TRACKED_QUEUE)
        succeeded = select(func.count()).where(bench_tracked.c.status == "succeeded")

        def done() -> int:
            with engine.connect() as connection:
                return int(connection.scalar(succeeded) or 0)

        try:
            cpu_per_job = _wait([proc], done, n, 1, "tracked baseline drain")
        finally:
            ctx.procs.stop(proc)
        completed = bench_tracked.c.completed_at
        with engine.connect() as connection:
            first, last = connection.execute(select(func.min(completed), func.max(completed))).one()
    finally:
        engine.dispose()
    span = float(last) - float(first)
    return Drain(enqueue_rate, n / span if span > 0 else math.nan, cpu_per_job)


def run(ctx: Context) -> list[Row]:
    """Run the end-to-end benchmark on every target; return its rows."""
    events = Row(
        "Raw Celery drain, 1 worker, with task events on (-E, as TaskForge's "
        "worker_send_task_events=True) vs off",
        "jobs/s",
    )
    ctx.diagnostics.append(events)
    rows: list[Row] = []
    for target in ctx.targets:
        rows += _run_on(ctx, target, events if target is ctx.sqlite else None)
    return rows


def _run_on(ctx: Context, target: Target, events: Row | None) -> list[Row]:
    """Run the end-to-end reps on one database (the raw Celery side uses none)."""
    config = ctx.config
    n = config.e2e_jobs
    on = target.label
    enqueue = Row(
        f"Bulk submit (pre-enqueue) rate, {on}",
        "jobs/s",
        Goal(">=", 0.50, 0.80),
        note="TF submit_jobs x500/txn vs kombu Producer.batch apply_async",
    )
    one = Row(f"End-to-end no-op throughput, 1 worker, {on}", "jobs/s", Goal(">=", 0.60, 0.70))
    cpu = Row(
        f"End-to-end worker CPU per job, 1 worker (parent + pool), {on}",
        "ms",
        Goal("<=", 1.8, 1.4),
    )
    two = Row(f"End-to-end no-op throughput, 2 workers, {on}", "jobs/s")
    scaling = Row(
        f"Horizontal scaling, 2 workers ÷ 1, {on} (TF column: TF; baseline column: raw Celery)",
        "x",
        Goal(">=", 1.6),
        baseline_must_reach=1.5,
    )
    sql_work = Row(
        f"End-to-end no-op throughput, 1 worker, {on}: TaskForge vs a raw Celery task "
        "that claims and finishes its own row (two autocommitted UPDATEs)",
        "jobs/s",
    )
    ctx.diagnostics.append(sql_work)
    rows = [enqueue, one, cpu]
    if config.horizontal:
        rows += [two, scaling]
        scaling.explicit_ratios = []
    for rep in range(config.reps):
        sides = [("base", 1), ("tf", 1)]
        if config.horizontal:
            sides += [("base", 2), ("tf", 2)]
        if rep % 2:
            sides = [(("tf" if s == "base" else "base"), w) for s, w in sides]
        got: dict[tuple[str, int], Drain] = {}
        for side, workers in sides:
            drain = tf_drain if side == "tf" else base_drain
            got[(side, workers)] = drain(ctx, target, n, workers)
        tf1, base1 = got[("tf", 1)], got[("base", 1)]
        if events is not None:
            with_events = base_drain(ctx, target, n, 1, ("-E",))
            events.add(with_events.drain_per_s, base1.drain_per_s)
        sql_work.add(tf1.drain_per_s, tracked_drain(ctx, target, n).drain_per_s)
        enqueue.add(tf1.enqueue_per_s, base1.enqueue_per_s)
        one.add(tf1.drain_per_s, base1.drain_per_s)
        cpu.add(tf1.cpu_ms_per_job, base1.cpu_ms_per_job)
        line = (
            f"  e2e {on} rep {rep + 1}: enqueue TF {tf1.enqueue_per_s:.0f}/s base "
            f"{base1.enqueue_per_s:.0f}/s | drain 1w TF {tf1.drain_per_s:.0f}/s "
            f"base {base1.drain_per_s:.0f}/s"
        )
        if config.horizontal:
            tf2, base2 = got[("tf", 2)], got[("base", 2)]
            two.add(tf2.drain_per_s, base2.drain_per_s)
            tf_scale = tf2.drain_per_s / tf1.drain_per_s
            scaling.add(tf_scale, base2.drain_per_s / base1.drain_per_s)
            assert scaling.explicit_ratios is not None
            scaling.explicit_ratios.append(tf_scale)
            line += f" | 2w TF {tf2.drain_per_s:.0f}/s base {base2.drain_per_s:.0f}/s"
        print(line, flush=True)
    return rows
