"""Reads at scale: seed a million jobs, then time the read calls a dashboard makes.

``python -m benchmarks.scale [--jobs 1000000] [--postgres-url URL]`` migrates a
fresh SQLite file (and, when a URL is given or ``BENCH_POSTGRES_URL`` /
``TEST_POSTGRES_URL`` is set, that **scratch** PostgreSQL database: its ``public``
schema is dropped and recreated), registers one organization through the REST
API, and seeds it with ``--jobs`` jobs over ``--queues`` queues with Core bulk
INSERTs (``--other-orgs`` more organizations get ``--other-jobs`` each, so every
query must pick its tenant's rows out of others').  Statuses and ages are mixed
as in a busy system: mostly finished jobs, some pending, scheduled, failed.

Then each read runs ``--calls`` times in a row through the Flask test client
(in-process, no HTTP server: what is measured is TaskForge's own work and the
database's), after 3 warm-up calls, and the p50/p99 are printed as a markdown
table (``--output`` appends it to a file), with the query plans of the hot
queries (``EXPLAIN`` / ``EXPLAIN QUERY PLAN``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

GOAL_MS = 25.0
MUST_MS = 50.0
CHUNK = 10_000
# Finished jobs dominate a long-lived system; the rest are spread over the live states.
STATUS_MIX = (
    ("succeeded", 0.80),
    ("failed", 0.06),
    ("cancelled", 0.03),
    ("pending", 0.06),
    ("scheduled", 0.02),
    ("processing", 0.03),
)


@dataclass
class Seeded:
    """What the reads need: who asks, and the ids they ask about."""

    client: Any
    headers: dict[str, str]
    queue_ids: list[str]
    job_id: str
    organization_id: str
    seconds: float


def _reset_postgres(url: str) -> None:
    from app.db import get_engine

    with get_engine(url).begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))


def _statuses(n: int, rng: random.Random) -> list[str]:
    names = [name for name, _ in STATUS_MIX]
    weights = [weight for _, weight in STATUS_MIX]
    return rng.choices(names, weights, k=n)


def _rows(
    organization_id: uuid.UUID, queue_ids: list[uuid.UUID], count: int, rng: random.Random
) -> Iterator[list[dict[str, Any]]]:
    """Yield chunks of job rows, created over the last 30 days, oldest first."""
    from app.models import JobStatus

    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(count, 1)
    for first in range(0, count, CHUNK):
        size = min(CHUNK, count - first)
        statuses = _statuses(size, rng)
        chunk = []
        for offset in range(size):
            created = start + step * (first + offset)
            status = JobStatus(statuses[offset])
            finished = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
            chunk.append(
                {
                    "id": uuid.uuid4(),
                    "organization_id": organization_id,
                    "queue_id": queue_ids[(first + offset) % len(queue_ids)],
                    "job_type": "echo",
                    "payload": {"n": first + offset},
                    "status": status,
                    "priority": (first + offset) % 10,
                    "max_attempts": 3,
                    "attempt_count": 1 if finished or status is JobStatus.PROCESSING else 0,
                    "dispatch_generation": 0,
                    "created_at": created,
                    "updated_at": created + timedelta(seconds=2),
                    "started_at": created + timedelta(seconds=1) if finished else None,
                    "completed_at": created + timedelta(seconds=2) if finished else None,
                    "published_at": created,
                    "scheduled_for": created + timedelta(days=31)
                    if status is JobStatus.SCHEDULED
                    else None,
                }
            )
        yield chunk


def _queues(client: Any, headers: dict[str, str], count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = client.post("/api/v1/queues", json={"name": f"q{n}"}, headers=headers)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def _register(client: Any, name: str) -> tuple[dict[str, str], str]:
    email = f"scale-{uuid.uuid4().hex[:10]}@example.com"
    password = "scale-password-123"
    registered = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "organization_name": name},
    )
    assert registered.status_code == 201, registered.get_json()
    login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    token = login.get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}, registered.get_json()["organization_id"]


def seed(database_url: str, redis_url: str, args: argparse.Namespace) -> Seeded:
    """Migrate, register the organizations and bulk-insert their jobs."""
    from app.api.app import create_app
    from app.config import load_settings
    from app.db import get_engine, session_scope
    from app.migrate import upgrade
    from app.models import Job
    from app.services import job_counts

    upgrade(database_url)
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        rate_limit_enabled=False,
        access_token_minutes=240,
    )
    client = create_app(settings).test_client()
    rng = random.Random(12)
    tenants = [(_register(client, "measured"), args.jobs)]
    tenants += [(_register(client, f"other-{n}"), args.other_jobs) for n in range(args.other_orgs)]
    engine = get_engine(database_url)
    started = time.perf_counter()
    measured_queues: list[str] = []
    for (headers, organization_id), count in tenants:
        queue_ids = _queues(client, headers, args.queues)
        measured_queues = measured_queues or queue_ids
        for chunk in _rows(
            uuid.UUID(organization_id), [uuid.UUID(q) for q in queue_ids], count, rng
        ):
            with engine.begin() as connection:
                connection.execute(Job.__table__.insert(), chunk)
    # What beat would have done by now: fold the job counters' deltas (PostgreSQL);
    # and autovacuum: statistics, and on PostgreSQL the visibility map that lets
    # a scan read the index alone.
    with session_scope(database_url) as session:
        job_counts.fold(session)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
        )
    seconds = time.perf_counter() - started
    (headers, organization_id), _ = tenants[0]
    newest = client.get("/api/v1/jobs?limit=1", headers=headers).get_json()["jobs"][0]["id"]
    return Seeded(client, headers, measured_queues, newest, organization_id, seconds)


def reads(seeded: Seeded) -> dict[str, str]:
    """The calls to time, by label."""
    queue = seeded.queue_ids[0]
    page_2000 = seeded.client.get("/api/v1/jobs?limit=20&page=2000", headers=seeded.headers)
    after = page_2000.get_json()["pagination"]["next_after"]
    return {
        "`GET /jobs?limit=20`": "/api/v1/jobs?limit=20",
        "`GET /jobs?limit=20&queue_id=…`": f"/api/v1/jobs?limit=20&queue_id={queue}",
        "`GET /jobs?limit=20&status=pending`": "/api/v1/jobs?limit=20&status=pending",
        "`GET /jobs?limit=20&page=2000`": "/api/v1/jobs?limit=20&page=2000",
        "`GET /jobs?limit=20&after=…` (the page after page 2000, by cursor)": (
            f"/api/v1/jobs?limit=20&after={after}"
        ),
        "`GET /jobs/{id}`": f"/api/v1/jobs/{seeded.job_id}",
        "`GET /queues/{id}/stats`": f"/api/v1/queues/{queue}/stats",
        "organization job stats (`GET /jobs?limit=1&status=…`, one call per status)": "",
        "organization job stats in one call (`GET /jobs/counts`)": "/api/v1/jobs/counts",
    }


def _org_stats(seeded: Seeded) -> Callable[[], None]:
    from app.models import JobStatus

    def call() -> None:
        for status in JobStatus:
            response = seeded.client.get(
                f"/api/v1/jobs?limit=1&status={status.value}", headers=seeded.headers
            )
            assert response.status_code == 200, response.get_json()

    return call


def time_calls(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """Run ``fn`` 3 times to warm up, then ``calls`` times; return p50 and p99 in ms."""
    for _ in range(3):
        fn()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return statistics.median(samples), p99


def measure(seeded: Seeded, calls: int) -> list[tuple[str, float, float]]:
    """Time every read; return (label, p50 ms, p99 ms) rows."""
    rows = []
    for label, path in reads(seeded).items():
        if path:

            def fn(path: str = path) -> None:
                response = seeded.client.get(path, headers=seeded.headers)
                assert response.status_code == 200, response.get_json()

        else:
            fn = _org_stats(seeded)
        p50, p99 = time_calls(fn, calls)
        rows.append((label, p50, p99))
        print(f"  {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
    return rows


def plans(database_url: str, seeded: Seeded) -> list[tuple[str, str]]:
    """EXPLAIN the hot queries of the reads."""
    from app.db import get_engine

    postgres = database_url.startswith("postgresql")
    explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
    org, queue = seeded.organization_id, seeded.queue_ids[0]
    if not postgres:
        org, queue = org.replace("-", ""), queue.replace("-", "")
    queries = {
        "list": "SELECT id FROM jobs WHERE organization_id = :org "
        "ORDER BY created_at DESC, id DESC LIMIT 20",
        # list_jobs checks the queue is the caller's, then selects by queue alone.
        "list by queue": "SELECT id FROM jobs WHERE queue_id = :queue "
        "ORDER BY created_at DESC, id DESC LIMIT 20",
        "counts by queue": "SELECT status, sum(n) FROM (SELECT status, n FROM job_counts "
        "WHERE organization_id = :org AND queue_id = :queue UNION ALL SELECT status, n "
        "FROM job_count_deltas WHERE organization_id = :org AND queue_id = :queue) AS c "
        "GROUP BY status",
        "list by status": "SELECT id FROM jobs WHERE organization_id = :org AND status = 'pending' "
        "ORDER BY created_at DESC, id DESC LIMIT 20",
        "counts": "SELECT status, sum(n) FROM (SELECT status, n FROM job_counts "
        "WHERE organization_id = :org UNION ALL SELECT status, n FROM job_count_deltas "
        "WHERE organization_id = :org) AS c GROUP BY status",
        "page 2000 (ids)": "SELECT id FROM jobs WHERE organization_id = :org "
        "ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 39980",
        "after a cursor (ids)": "SELECT id FROM jobs WHERE organization_id = :org "
        "AND (created_at, id) < (:created, :job) ORDER BY created_at DESC, id DESC LIMIT 20",
    }
    # EXPLAIN QUERY PLAN needs values, not the real ones: any time and id will do.
    cursor_time, cursor_job = datetime.now(UTC).isoformat(), queue
    found = []
    with get_engine(database_url).connect() as connection:
        for label, sql in queries.items():
            values = {"org": org, "queue": queue, "created": cursor_time, "job": cursor_job}
            rows = connection.execute(text(f"{explain} {sql}"), values).all()
            found.append((label, " / ".join(str(row[-1]).strip() for row in rows)))
    return found


@contextmanager
def _redis() -> Iterator[str]:
    from app.redis_server import free_port, start_redis

    tmp = Path(tempfile.mkdtemp(prefix="taskforge-scale-"))
    port = free_port()
    server = start_redis(port, tmp / "redis", appendonly=False)
    try:
        server.wait_ready()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _verdict(p99: float) -> str:
    if p99 < GOAL_MS:
        return "goal"
    return "must" if p99 < MUST_MS else "**miss**"


def report(results: dict[str, tuple[Seeded, list[tuple[str, float, float]]]], args: Any) -> str:
    """The markdown section with every backend's rows and plans."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    lines = [
        f"### Reads at scale ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit})",
        "",
        f"`python -m benchmarks.scale --jobs {args.jobs}`: {args.jobs:,} jobs in the measured "
        f"organization over {args.queues} queues, plus {args.other_orgs} other organizations "
        f"with {args.other_jobs:,} jobs each; {args.calls} sequential calls per row after 3 "
        f"warm-ups, Flask test client in-process. Machine: {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}.",
        "",
        f"| Read | {' | '.join(f'{name} p50 / p99 (ms)' for name in results)} | verdict (p99 "
        f"< {GOAL_MS:.0f} ms goal, < {MUST_MS:.0f} ms must) |",
        "|---|" + "---|" * len(results) + "---|",
    ]
    labels = [label for label, _, _ in next(iter(results.values()))[1]]
    for n, label in enumerate(labels):
        cells = [f"{rows[n][1]:.1f} / {rows[n][2]:.1f}" for _, rows in results.values()]
        verdicts = ", ".join(
            f"{name}: {_verdict(rows[n][2])}" for name, (_, rows) in results.items()
        )
        lines.append(f"| {label} | {' | '.join(cells)} | {verdicts} |")
    lines.append("")
    for name, (seeded, _) in results.items():
        lines.append(
            f"Seeding {name}: {seeded.seconds:.0f} s "
            f"(Core bulk INSERT, {CHUNK:,} rows a statement)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Seed each backend, time the reads, print (and optionally append) the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--other-orgs", type=int, default=2)
    parser.add_argument("--other-jobs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("TEST_POSTGRES_URL"),
        help="a scratch PostgreSQL database (its public schema is dropped)",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--output", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    from app.heap import freeze_startup_objects

    results: dict[str, tuple[Seeded, list[tuple[str, float, float]]]] = {}
    with _redis() as redis_url, tempfile.TemporaryDirectory(prefix="taskforge-scale-") as tmp:
        targets = [] if args.no_sqlite else [("SQLite", f"sqlite:///{tmp}/scale.db")]
        if args.postgres_url:
            targets.append(("PostgreSQL", args.postgres_url))
        for name, url in targets:
            if name == "PostgreSQL":
                _reset_postgres(url)
            print(
                f"{name}: seeding {args.jobs:,} + {args.other_orgs} x {args.other_jobs:,} jobs",
                flush=True,
            )
            seeded = seed(url, redis_url, args)
            # As every TaskForge server process does where its start-up ends
            # (app.heap): the calls then time the reads, not a full collection
            # walking the seeding's objects.
            freeze_startup_objects()
            print(f"{name}: seeded in {seeded.seconds:.0f} s; timing reads", flush=True)
            results[name] = (seeded, measure(seeded, args.calls))
            for label, plan in plans(url, seeded):
                print(f"  plan {label}: {plan}", flush=True)
    table = report(results, args)
    print("\n" + table)
    if args.output:
        with args.output.open("a") as out:
            out.write("\n" + table)


if __name__ == "__main__":
    main()
