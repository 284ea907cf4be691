"""Per-request cost breakdown of REST submit, measured in-process, one piece at a time.

``python -m benchmarks.breakdown [--iterations 500]`` times TaskForge's
``POST /api/v1/jobs`` and the baseline's ``POST /submit`` through Flask's test
client (no HTTP server, no load generator), then each building block of
TaskForge's submit path on its own: JWT decode, the token blocklist round trip,
the actor lookup, the ORM insert + commit, the publish and the ``published_at``
UPDATE.  Wall time is the median per call; CPU is this process's CPU per call
(Redis and other processes excluded), which stays meaningful on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.config import BenchConfig
from benchmarks.context import Context

TF_REQUEST = "TaskForge POST /api/v1/jobs (whole request, test client)"
BASE_REQUEST = "baseline POST /submit (whole request, test client)"
BULK = 500


def measure(fn: Callable[[], Any], iterations: int) -> tuple[float, float]:
    """Run ``fn`` (after 20 warm-ups); return (median wall µs, mean CPU µs) per call."""
    for _ in range(20):
        fn()
    walls: list[float] = []
    cpu0 = time.process_time()
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu0) / iterations
    return statistics.median(walls) * 1e6, cpu * 1e6


def _pieces(ctx: Context) -> dict[str, Callable[[], Any]]:
    import benchmarks.baseline_app as baseline
    from app.api import context
    from app.api.app import create_app
    from app.config import load_settings
    from app.db import session_scope
    from app.services import outbox
    from app.services.auth import actor_for_user_id
    from app.services.jobs import submit_job
    from app.services.outbox import Dispatch, mark_published
    from app.services.tokens import ACCESS
    from benchmarks.baseline_celery import count
    from benchmarks.baseline_db import bench_jobs
    from tasks.publisher import CeleryPublisher, send

    tenant = ctx.sqlite.tenant
    url = tenant.database_url
    settings = load_settings(database_url=url, redis_url=ctx.redis_url, rate_limit_enabled=False)
    flask_app = create_app(settings)
    with flask_app.app_context():
        runtime = context.runtime()
    tf_client = flask_app.test_client()
    base_client = baseline.app.test_client()
    headers = {"Authorization": tenant.auth_header}
    body = {"queue_id": tenant.queue_id, "job_type": "echo", "payload": {"n": 1}}
    claims = runtime.tokens.decode(tenant.token, expected=ACCESS)
    tokens = runtime.tokens.store
    with session_scope(url) as session:
        actor = actor_for_user_id(session, tenant.user_id)
    job_ids: list[uuid.UUID] = []

    def tf_request() -> None:
        response = tf_client.post("/api/v1/jobs", json=body, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)

    def base_request() -> None:
        response = base_client.post("/submit", json=body)
        assert response.status_code == 201

    def jwt_decode() -> None:
        runtime.tokens.decode(tenant.token, expected=ACCESS)

    def actor_lookup() -> None:
        with session_scope(url) as session:
            actor_for_user_id(session, tenant.user_id)

    def submit_sql_only() -> None:
        outbox.set_publisher(None)  # stage nothing out: ORM insert + flush + commit only
        try:
            with session_scope(url) as session:
                job = submit_job(session, actor=actor, queue_id=tenant.queue_id, **_spec())
                job_ids.append(job.id)
        finally:
            outbox.set_publisher(CeleryPublisher(url))

    def dispatch() -> Dispatch:
        job_id = job_ids[-1] if job_ids else uuid.uuid4()
        return Dispatch(job_id, uuid.UUID(tenant.queue_id), 0, 0, 300)

    def base_insert() -> None:
        with baseline.engine.begin() as connection:
            connection.execute(
                bench_jobs.insert().values(
                    id=str(uuid.uuid4()),
                    queue="bench.rest",
                    job_type="echo",
                    payload="{}",
                    status="pending",
                    created_at=time_now(),
                )
            )

    return {
        TF_REQUEST: tf_request,
        BASE_REQUEST: base_request,
        "JWT decode + verify (TokenService.decode: PyJWT)": jwt_decode,
        "token blocklist + actor epoch (TokenStore.check: Redis MGET)": lambda: tokens.check(
            claims["jti"], claims.get("family")
        ),
        "actor lookup (session + User by id + commit)": actor_lookup,
        "submit_job ORM insert + commit, no publish": submit_sql_only,
        "publish one job (tasks.publisher.send: send_task)": lambda: send([dispatch()]),
        "published_at UPDATE (outbox.mark_published)": lambda: mark_published(url, [dispatch()]),
        "baseline INSERT + commit (Core)": base_insert,
        "baseline apply_async": lambda: count.apply_async(args=["x"], queue="bench.rest"),
    }


def _worker_pieces(ctx: Context, iterations: int) -> dict[str, Callable[[], Any]]:
    """Per-job pieces of the worker's ``execute`` (claim, lease thread, record)."""
    from app.db import session_scope
    from app.services import outbox
    from app.services.auth import actor_for_user_id
    from app.services.execution import claim, record_success
    from app.services.jobs import submit_job
    from benchmarks.baseline_celery import _redis
    from tasks.executor import execute, lease_keeper
    from tasks.publisher import CeleryPublisher

    lease = 30.0

    tenant = ctx.sqlite.tenant
    url = tenant.database_url
    total = iterations + 20
    pools: dict[str, list[uuid.UUID]] = {"execute": [], "claim": []}
    outbox.set_publisher(None)  # rows only: no message is needed to call the executor
    try:
        with session_scope(url) as session:
            actor = actor_for_user_id(session, tenant.user_id)
            for pool in pools.values():
                for _ in range(total):
                    job = submit_job(session, actor=actor, queue_id=tenant.queue_id, **_spec())
                    pool.append(job.id)
    finally:
        outbox.set_publisher(CeleryPublisher(url))
    to_execute = iter(pools["execute"])
    to_claim = iter(pools["claim"])
    claimed: list[tuple[uuid.UUID, Any]] = []
    to_record = iter(claimed)

    def claim_one() -> None:
        job_id = next(to_claim)
        result = claim(url, job_id, 0, "bench@worker", lease_seconds=lease)
        assert result is not None
        claimed.append((job_id, result))

    def record_one() -> None:
        job_id, result = next(to_record)
        record_success(url, job_id, result, {"n": 1})

    def lease_hold() -> None:
        with lease_keeper(url, lease).hold(uuid.uuid4(), 1):
            pass

    return {
        "worker: execute() whole (claim + lease + echo + record)": lambda: execute(
            str(next(to_execute)), 0, "bench@worker", url, lease_seconds=lease
        ),
        "worker: claim() (UPDATE..RETURNING + attempt INSERT + SELECT, commit)": claim_one,
        "worker: record_success() (2 UPDATEs, commit)": record_one,
        "worker: lease_keeper().hold() enter/exit": lease_hold,
        "baseline task body (Redis RPUSH)": lambda: _redis().rpush("bench:x", "1"),
    }


def time_now() -> Any:
    """The current UTC time (what the baseline stores)."""
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _spec() -> dict[str, Any]:
    return {"job_type": "echo", "payload": {"n": 1}}


def main() -> None:
    """Time every piece and print a markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument(
        "--counts",
        action="store_true",
        help="only the whole requests' CPU, statement and Redis counts, and cProfile shares",
    )
    args = parser.parse_args()
    from benchmarks.session import open_session

    with open_session(BenchConfig(reps=1)) as ctx:
        if args.counts:
            pieces = _pieces(ctx)
            ctx.settle("breakdown")
            for name in (TF_REQUEST, BASE_REQUEST):
                wall, cpu = measure(pieces[name], args.iterations)
                print(f"| {name} | {wall:,.0f} µs wall | {cpu:,.0f} µs CPU |", flush=True)
            _counts_and_shares(ctx, pieces)
            return
        pieces = {**_pieces(ctx), **_worker_pieces(ctx, args.iterations)}
        ctx.settle("breakdown")
        lines = ["| Piece | wall µs (median) | CPU µs (mean, this process) |", "|---|---|---|"]
        for name, fn in pieces.items():
            wall, cpu = measure(fn, args.iterations)
            lines.append(f"| {name} | {wall:,.0f} | {cpu:,.0f} |")
            print(lines[-1], flush=True)
        print("\n" + "\n".join(lines) + "\n", flush=True)
        _counts_and_shares(ctx, pieces)


def _bulk_batch(ctx: Context) -> Callable[[], Any]:
    """One ``submit_jobs`` transaction of 500 echo jobs, published after commit."""
    from app.db import session_scope
    from app.services.auth import actor_for_user_id
    from app.services.jobs import submit_jobs
    from tasks.publisher import install

    tenant = ctx.sqlite.tenant
    install(tenant.database_url, ctx.redis_url)
    specs = [dict(_spec(), queue_id=tenant.queue_id) for _ in range(BULK)]

    def batch() -> None:
        with session_scope(tenant.database_url) as session:
            actor = actor_for_user_id(session, tenant.user_id)
            submit_jobs(session, actor=actor, jobs=specs)

    return batch


def _counts_and_shares(ctx: Context, pieces: dict[str, Callable[[], Any]]) -> None:
    import benchmarks.baseline_app as baseline
    from app.db import get_engine
    from benchmarks import callcount

    engines = [get_engine(ctx.sqlite.database_url), baseline.engine]
    tf_request = pieces[TF_REQUEST]
    bulk = _bulk_batch(ctx)
    print("What one submit does (per request / per bulk job):")
    print(f"- TaskForge POST /api/v1/jobs: {callcount.count(ctx, engines, tf_request, 100)}")
    base = callcount.count(ctx, engines, pieces[BASE_REQUEST], 100)
    print(f"- baseline POST /submit: {base}")
    bulk_counts = callcount.count(ctx, engines, bulk, 2, per=BULK)
    print(f"- TaskForge submit_jobs x{BULK}, per job: {bulk_counts}")
    for label, fn, n in (("POST /api/v1/jobs", tf_request, 300), (f"submit_jobs x{BULK}", bulk, 4)):
        print(f"\ncProfile share of TaskForge {label} (cumulative, nested):")
        for name, share in callcount.profile_shares(fn, n):
            print(f"  {share:6.1%}  {name}")


if __name__ == "__main__":
    main()
