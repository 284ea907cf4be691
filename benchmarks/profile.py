"""Profile where TaskForge spends its time under the benchmark's load, with py-spy.

``python -m benchmarks.profile rest``    py-spy on gunicorn (both workers) under wrk
``python -m benchmarks.profile worker``  py-spy on a Celery worker draining echo jobs
``python -m benchmarks.profile grpc``    py-spy on one gRPC server process under load
Add ``--baseline`` to profile the matching baseline instead, ``--postgres`` to run
TaskForge on a throwaway PostgreSQL cluster (as ``make bench`` does) instead of SQLite.

It prints the share of busy samples spent inside each cost centre (they nest, so
they do not add up to 100%) and the top frames, and keeps the raw collapsed
stacks (``--output``) for flame-graph tools.  ``--wall`` samples idle threads too
and splits the samples by process (a Celery worker's main loop, its pool
processes), so it tells where each one's *time* goes: a pool process waiting
for its next job, the main loop blocked on a Redis round trip or idle in epoll
(:func:`summarize_wall`).  Without it, a sample is busy when py-spy saw its
thread on the CPU (it runs without ``--idle``: a thread asleep in C, such as
``time.sleep`` or a socket read, shows only its Python frames, which no pattern can
tell from work) and its leaf matches no ``IDLE`` pattern.  Needs ``py-spy``
(``pip install py-spy``) and root or ptrace rights.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import RESULTS_DIR, BenchConfig
from benchmarks.context import PYTHON, Context, Target

# Cost centres: a busy sample counts for a centre when any frame of its stack matches.
CENTRES: dict[str, str] = {
    "JWT verify (PyJWT)": r"decode \(.*app/services/tokens\.py|jwt/api_j",
    "token blocklist + actor epoch (Redis MGET)": r"check \(.*app/services/tokens\.py",
    "rate limit + blocklist + epoch (one script)": r"admit \(.*app/services/admission\.py",
    "actor lookup (SQL)": r"actor_for_(user_id|api_key|token) ",
    "rate limiter": r"flask_limiter|/limits/",
    "request parsing (webargs + marshmallow load)": r"Parser\.parse \(webargs|Schema\.load \(",
    "response serialisation (marshmallow dump)": r"Schema\.dump \(",
    "submit_job service (ORM add + flush)": r"submit_job \(.*app/services/jobs\.py",
    "SQL commit (request transaction)": r"_finish_session|session_scope|commit \(.*sqlalchemy/orm",
    "publish: send_task (kombu/Redis)": r"send \(.*tasks/publisher\.py|send_task",
    "publish: published_at UPDATE": r"mark_published",
    "worker: claim (UPDATE + attempt INSERT + SELECT)": r"claim \(.*app/services/execution\.py",
    "worker: record_success": r"record_success",
    "worker: lease renewal thread start/stop": r"lease_renewal",
    "worker: task events (celery.events)": r"celery/events/",
    "SQLite execute (all)": r"sqlite3|do_execute \(",
    "Redis client I/O (all)": r"redis/(connection|client)\.py",
    "logging": r"/logging/__init__\.py",
}
# Samples of a process waiting for work are idle, not cost.
IDLE = re.compile(
    r"(select|poll|wait|accept) \(.*(gunicorn/workers|selectors\.py|billiard|kombu/asynchronous"
    r"|kombu/utils/eventio\.py)|_recv \(.*billiard/connection\.py"
    r"|(select|poll|wait|accept) \(.*(concurrent/futures/thread\.py|threading\.py)"
    r"|sleep \(|_wait_for_tstate_lock|"
    r"run_forever|poll \(.*grpc|channel_spin|_serve|LeaseKeeper\._loop \("
)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def _record(pid: int, seconds: float, output: Path, *, wall: bool) -> subprocess.Popen[bytes]:
    argv = [
        _py_spy(),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        "200",
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(output),
        *(["--idle"] if wall else []),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@dataclass(frozen=True)
class Run:
    """What to profile and how."""

    baseline: bool
    seconds: float
    output: Path
    wall: bool = False
    postgres: bool = False

    def target(self, ctx: Context) -> Target:
        """The database the profiled side writes to: PostgreSQL with ``--postgres``."""
        return ctx.targets[-1] if self.postgres else ctx.sqlite

    def record(self, pid: int) -> subprocess.Popen[bytes]:
        """Start py-spy on ``pid`` and its children for the run's seconds."""
        return _record(pid, self.seconds, self.output, wall=self.wall)


def _stacks(raw: Path) -> Iterator[tuple[str, int]]:
    """Each stack of a py-spy raw (collapsed) file, with its sample count."""
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack, int(count_text)


def _frame(frame: str) -> str:
    """A frame without its line number, so that one function counts once."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(raw: Path, top: int = 25) -> str:
    """Cost-centre shares and top inclusive frames of a py-spy raw (collapsed) file."""
    busy = 0
    idle = 0
    centres: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    for stack, count in _stacks(raw):
        leafward = stack.split(";")
        if IDLE.search(leafward[-1]) or IDLE.search(";".join(leafward[-3:])):
            idle += count
            continue
        busy += count
        for name, pattern in CENTRES.items():
            if re.search(pattern, stack):
                centres[name] += count
        for frame in {_frame(f) for f in leafward[2:]}:
            frames[frame] += count
    if not busy:
        return "no busy samples"
    lines = [f"busy samples: {busy} ({idle} idle samples excluded)", "", "Cost centres:"]
    lines += [f"  {n / busy:6.1%}  {name}" for name, n in centres.most_common()]
    lines += ["", f"Top {top} frames (inclusive):"]
    lines += [f"  {n / busy:6.1%}  {frame}" for frame, n in frames.most_common(top)]
    return "\n".join(lines)


# --wall: the threads whose time is summed, by the frame that runs them.
WORKER_ROLES: dict[str, str] = {
    "worker main loop (consumer, one per worker)": r"asynloop \(",
    "pool processes' main threads (waiting for a job or running it)": r"Worker\.workloop \(",
}
ALL_THREADS: dict[str, str] = {"every thread of the process tree": ""}


def summarize_wall(raw: Path, roles: dict[str, str], top: int = 30) -> str:
    """Where each role's wall time goes, from a py-spy raw file recorded with ``--idle``.

    A sample belongs to the first role whose pattern one of its frames matches;
    each role's frames are shares of that role's samples, inclusive.  Frames in
    at least 98% of a role's samples (the thread's trunk) are left out.
    """
    samples: Counter[str] = Counter()
    frames: dict[str, Counter[str]] = {role: Counter() for role in roles}
    for stack, count in _stacks(raw):
        role = next((r for r, pattern in roles.items() if re.search(pattern, stack)), None)
        if role is None:
            continue
        samples[role] += count
        for frame in {_frame(f) for f in stack.split(";")}:
            if not frame.startswith("process "):
                frames[role][frame] += count
    lines: list[str] = []
    for role in roles:
        total = samples[role]
        lines += ["", f"{role}: {total} samples"]
        shown = [(n, f) for f, n in frames[role].most_common() if n < 0.98 * total][:top]
        lines += [f"  {n / total:6.1%}  {frame}" for n, frame in shown]
    return "\n".join(lines).strip() if any(samples.values()) else "no samples in any role"


def _profile_rest(ctx: Context, run: Run) -> None:
    from benchmarks import wrk
    from benchmarks.tenant import reset_jobs

    target = run.target(ctx)
    reset_jobs(target.database_url)
    wrk_bin, why = wrk.ensure_wrk(ctx.config.install_wrk)
    if wrk_bin is None:
        raise SystemExit(why)
    if run.baseline:
        spec, health, path, body = "benchmarks.baseline_app:app", "/health", "/submit", {}
        headers: dict[str, str] = {}
    else:
        spec, health, path = "wsgi:app", "/healthz", "/api/v1/jobs"
        body = {"queue_id": target.tenant.queue_id}
        headers = {"Authorization": target.tenant.auth_header}
    script = wrk.write_post_script(
        ctx.tmp / "profile.lua", {**body, "job_type": "echo", "payload": {"n": 1}}, headers
    )
    proc, port = ctx.start_gunicorn("gunicorn-profile", spec, health, target.database_url)
    url = f"http://127.0.0.1:{port}{path}"
    wrk.run(wrk_bin, url, script, seconds=1, connections=8, threads=1)
    spy = run.record(proc.pid)
    result = wrk.run(wrk_bin, url, script, seconds=run.seconds + 2, connections=8, threads=1)
    spy.wait(run.seconds + 60)
    ctx.procs.stop(proc)
    print(f"under py-spy: {result.requests_per_s:.0f} req/s, p99 {result.p99_ms:.1f} ms")


def _profile_worker(ctx: Context, run: Run) -> None:
    from benchmarks import e2e
    from benchmarks.tenant import reset_jobs

    target = run.target(ctx)
    reset_jobs(target.database_url)
    ctx.clear_broker()
    n = ctx.config.e2e_jobs
    if run.baseline:
        e2e.base_enqueue(ctx, n)
        worker = ctx.start_worker(
            "base-profile", "benchmarks.baseline_celery", target.database_url, "-Q", e2e.BASE_QUEUE
        )
    else:
        e2e.tf_enqueue(ctx, target, n)
        worker = ctx.start_worker("tf-profile", "tasks.celery_app", target.database_url)
    time.sleep(2.0)  # past worker start-up
    spy = run.record(worker.pid)
    spy.wait(run.seconds + 60)
    ctx.procs.stop(worker)


def _profile_grpc(ctx: Context, run: Run) -> None:
    from benchmarks.procs import free_port, port_open, wait_until
    from benchmarks.tenant import reset_jobs

    target = run.target(ctx)
    reset_jobs(target.database_url)
    port = free_port()
    side = "baseline" if run.baseline else "taskforge"
    argv = [PYTHON, "-m", "benchmarks.grpc_servers", side, "--port", str(port)]
    argv += ["--threads", str(ctx.config.grpc_threads)]
    server = ctx.procs.start("grpc-profile", argv, {"DATABASE_URL": target.database_url})
    wait_until(lambda: port_open(port), timeout=60, what="gRPC server", proc=server)
    client_argv = [PYTHON, "-m", "benchmarks.grpc_client", "--targets", f"127.0.0.1:{port}"]
    client_argv += ["--queue-id", target.tenant.queue_id, "--token", target.tenant.token]
    client_argv += ["--seconds", str(run.seconds + 2)]
    client = subprocess.Popen(client_argv, cwd=ctx.procs.cwd, env=ctx.procs.base_env)
    time.sleep(1.5)
    spy = run.record(server.pid)
    spy.wait(run.seconds + 60)
    client.wait(run.seconds + 120)
    ctx.procs.stop(server)


def main() -> None:
    """Profile one target and print the summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("target", choices=["rest", "worker", "grpc"])
    parser.add_argument("--baseline", action="store_true", help="profile the baseline instead")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=5000, help="jobs for the worker profile")
    parser.add_argument("--output", type=Path, help="raw collapsed stacks (default results/)")
    parser.add_argument(
        "--wall", action="store_true", help="sample idle threads too; split by process role"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="TaskForge on a throwaway PostgreSQL cluster (BENCH_POSTGRES_URL if set)",
    )
    args = parser.parse_args()
    from benchmarks.session import open_session

    config = BenchConfig(reps=1, e2e_jobs=args.jobs, postgres=args.postgres)
    side = "baseline" if args.baseline else "taskforge"
    output = args.output or RESULTS_DIR / f"profile-{args.target}-{side}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    run = Run(args.baseline, args.seconds, output, wall=args.wall, postgres=args.postgres)
    profile = {"rest": _profile_rest, "worker": _profile_worker, "grpc": _profile_grpc}
    with open_session(config, with_postgres=args.postgres) as ctx:
        if args.postgres and len(ctx.targets) < 2:
            raise SystemExit("--postgres: no PostgreSQL (install it, or set BENCH_POSTGRES_URL)")
        profile[args.target](ctx, run)
    if args.wall:
        print(summarize_wall(output, WORKER_ROLES if args.target == "worker" else ALL_THREADS))
    else:
        print(summarize(output))
    print(f"\nraw stacks: {output}")


if __name__ == "__main__":
    main()
