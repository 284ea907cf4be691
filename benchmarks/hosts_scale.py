"""Scale across simulated hosts on PostgreSQL: TaskForge against raw Celery, same layout.

    sudo .venv/bin/python -m benchmarks.hosts_scale [--jobs 3000] [--reps 2]
    (``make bench-hosts``; needs root for network namespaces, and PostgreSQL installed)

Four network namespaces on one bridge (tests/support/hosts.py): PostgreSQL, Redis and
two worker hosts. For 1, 2 and 4 worker processes (``celery worker -c 1``, spread over
the two worker hosts) it pre-enqueues ``--jobs`` no-op jobs, starts the workers and
times the drain, first completion to last, for TaskForge (``echo`` jobs submitted
through the service layer into PostgreSQL, run by ``tasks.celery_app``) and for raw
Celery (``benchmarks.baseline_celery``'s ``count`` task on the same Redis) in the same
run, alternating which side goes first. During each drain it samples the CPU seconds
of the workers, PostgreSQL and Redis, and the machine's busy fraction: that names the
bottleneck. The report goes to ``benchmarks/results/hosts-scale.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

from benchmarks.e2e import BASE_QUEUE, publish_baseline, submit_echo_jobs
from benchmarks.machine import describe
from benchmarks.procs import _cpu_times, tree_cpu_seconds
from benchmarks.tenant import Tenant, prepare, reset_jobs
from tests.support import hosts

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "hosts-scale.md"
WORKER_COUNTS = (1, 2, 4)
WORKER_FLAGS = (
    "worker", "-P", "prefork", "-c", "1", "--prefetch-multiplier", "1",
    "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
)  # fmt: skip


@dataclass(frozen=True)
class Drain:
    """One drain: jobs per second and where the CPU went (seconds per 1,000 jobs)."""

    rate: float
    workers_cpu: float
    postgres_cpu: float
    redis_cpu: float
    busy: float  # the machine's busy fraction during the drain


@dataclass
class Layout:
    """The hosts, their servers, and the TaskForge tenant."""

    network: hosts.Network
    root: Path
    database_url: str
    redis_url: str
    tenant: Tenant

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def server_pids(self, name: str) -> list[int]:
        return [p.pid for p in self.network.hosts[name].processes if p.poll() is None]

    def start_workers(self, count: int, app_module: str, *extra: str) -> list[int]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")},
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TASKFORGE_VAR_DIR": str(self.root / "var"),
        }
        started = []
        for index in range(count):
            host = self.network.hosts[f"worker-{index % 2 + 1}"]
            name = f"{app_module.split('.')[0]}{index}-{uuid.uuid4().hex[:4]}@bench"
            process = host.start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    app_module,
                    *WORKER_FLAGS,
                    "-n",
                    name,
                    *extra,
                ],
                self.root / f"{name}.log",
                env=env,
                cwd=PROJECT_ROOT,
            )
            started.append(process)
        return [p.pid for p in started]

    def stop_workers(self, pids: list[int]) -> None:
        for host in ("worker-1", "worker-2"):
            for process in list(self.network.hosts[host].processes):
                if process.pid in pids:
                    self.network.hosts[host].stop(process)
                    self.network.hosts[host].processes.remove(process)


def _measure(
    layout: Layout, workers: list[int], done: Callable[[], int], n: int
) -> tuple[float, float, float, float]:
    """Wait for ``n`` done; return CPU seconds of workers, PostgreSQL, Redis and busy fraction."""
    groups = [workers, layout.server_pids("postgres"), layout.server_pids("redis")]
    first: tuple[list[float], tuple[int, int]] | None = None
    deadline = time.monotonic() + max(300.0, n / 20)
    while True:
        finished = done()
        if first is None and finished > 0:
            first = ([tree_cpu_seconds(g) for g in groups], _cpu_times())
        if finished >= n and first is not None:
            cpu = [tree_cpu_seconds(g) - before for g, before in zip(groups, first[0], strict=True)]
            idle, total = _cpu_times()
            busy = 1 - (idle - first[1][0]) / max(1, total - first[1][1])
            return cpu[0], cpu[1], cpu[2], busy
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {finished} of {n} done before the deadline")
        time.sleep(0.1)


def taskforge_drain(layout: Layout, n: int, count: int) -> Drain:
    from sqlalchemy import func, select

    from app.db import get_engine
    from app.models import Job, JobStatus

    reset_jobs(layout.database_url)
    with layout.redis() as client:
        client.flushdb()
    submit_echo_jobs(layout.tenant, layout.redis_url, n)
    engine = get_engine(layout.database_url)

    def done() -> int:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count()).where(
                        Job.status.in_((JobStatus.SUCCEEDED, JobStatus.FAILED))
                    )
                )
                or 0
            )

    pids = layout.start_workers(count, "tasks.celery_app")
    try:
        cpu = _measure(layout, pids, done, n)
    finally:
        layout.stop_workers(pids)
    with engine.connect() as connection:
        first_done, last_done = connection.execute(
            select(func.min(Job.completed_at), func.max(Job.completed_at))
        ).one()
    if first_done is None or last_done is None:
        raise RuntimeError("no TaskForge job completed")
    span = (last_done - first_done).total_seconds()
    return _drain(n, span, cpu)


def celery_drain(layout: Layout, n: int, count: int) -> Drain:
    os.environ["REDIS_URL"] = layout.redis_url  # read by baseline_celery at import
    from benchmarks.baseline_celery import DONE_KEY, app

    app.conf.broker_url = layout.redis_url
    with layout.redis() as client:
        client.flushdb()
    publish_baseline(n)
    client = layout.redis()
    pids = layout.start_workers(count, "benchmarks.baseline_celery", "-Q", BASE_QUEUE)
    try:
        cpu = _measure(layout, pids, lambda: int(client.llen(DONE_KEY)), n)
        stamps = [float(x) for x in client.lrange(DONE_KEY, 0, -1)]
    finally:
        layout.stop_workers(pids)
        client.close()
    return _drain(n, max(stamps) - min(stamps), cpu)


def _drain(n: int, span: float, cpu: tuple[float, float, float, float]) -> Drain:
    per_k = 1000.0 / n
    return Drain(
        rate=n / span if span > 0 else math.nan,
        workers_cpu=cpu[0] * per_k,
        postgres_cpu=cpu[1] * per_k,
        redis_cpu=cpu[2] * per_k,
        busy=cpu[3],
    )


def _median(drains: list[Drain], field: str) -> float:
    return statistics.median(getattr(d, field) for d in drains)


def report(results: dict[tuple[str, int], list[Drain]], n: int, reps: int) -> str:
    lines = [
        f"# Scale across hosts on PostgreSQL ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python -m benchmarks.hosts_scale --jobs {n} --reps {reps}`: PostgreSQL, Redis "
        "and two worker hosts as network namespaces on one machine "
        f"({describe()}). Worker processes are `celery worker -P prefork -c 1 "
        "--prefetch-multiplier 1`, spread over the two worker hosts. Medians of the reps; "
        "CPU is seconds per 1,000 jobs during the drain.",
        "",
        "| worker processes | TaskForge jobs/s | raw Celery jobs/s | ratio "
        "| TaskForge scaling vs 1 | raw scaling vs 1 | TF CPU: workers / PostgreSQL / Redis "
        "| raw CPU: workers / Redis | machine busy (TF, raw) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tf1 = _median(results[("tf", 1)], "rate")
    raw1 = _median(results[("raw", 1)], "rate")
    for count in WORKER_COUNTS:
        tf, raw = results[("tf", count)], results[("raw", count)]
        tf_rate, raw_rate = _median(tf, "rate"), _median(raw, "rate")
        lines.append(
            f"| {count} | {tf_rate:.0f} | {raw_rate:.0f} | {tf_rate / raw_rate:.2f} | "
            f"{tf_rate / tf1:.2f} | {raw_rate / raw1:.2f} | "
            f"{_median(tf, 'workers_cpu'):.2f} / {_median(tf, 'postgres_cpu'):.2f} / "
            f"{_median(tf, 'redis_cpu'):.2f} | {_median(raw, 'workers_cpu'):.2f} / "
            f"{_median(raw, 'redis_cpu'):.2f} | {_median(tf, 'busy'):.0%}, "
            f"{_median(raw, 'busy'):.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    if (why := hosts.available()) is not None:
        sys.exit(f"hosts_scale: {why}")
    with (
        tempfile.TemporaryDirectory(prefix="taskforge-hosts-scale-") as tmp,
        hosts.Network(78) as network,
    ):
        root = Path(tmp)
        for name in ("postgres", "redis", "worker-1", "worker-2"):
            network.add(name)
        database_url = network.hosts["postgres"].start_postgres(root / "postgres.log")
        redis_url = network.hosts["redis"].start_redis(root / "redis", appendonly=False)
        layout = Layout(network, root, database_url, redis_url, prepare(database_url, redis_url))
        results: dict[tuple[str, int], list[Drain]] = {}
        for rep in range(args.reps):
            for count in WORKER_COUNTS:
                sides = ["tf", "raw"] if (rep + count) % 2 else ["raw", "tf"]
                for side in sides:
                    drain = (taskforge_drain if side == "tf" else celery_drain)(
                        layout, args.jobs, count
                    )
                    results.setdefault((side, count), []).append(drain)
                    print(f"rep {rep + 1} {side} x{count}: {drain.rate:.0f} jobs/s", flush=True)
        text = report(results, args.jobs, args.reps)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
