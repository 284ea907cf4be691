"""What every benchmark shares: settings, the private Redis, the tenants, the processes."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from app.broker import BrokerProbe
from benchmarks.config import BenchConfig
from benchmarks.procs import Proc, ProcessSet, cpu_busy, free_port, http_ok, wait_until
from benchmarks.report import Row
from benchmarks.tenant import Tenant

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The WSGI app ``make run`` serves, and a limit high enough that the shipped
# configuration's rate limiting runs in full without refusing the load.
SHIPPED_APP = "wsgi:app"
SHIPPED_RATE_LIMIT = "100000000 per minute"

# The worker command of the brief and of perf-anchors §1c, for TaskForge and baseline alike.
WORKER_FLAGS = (
    "worker",
    "-P",
    "prefork",
    "-c",
    "2",
    "--prefetch-multiplier",
    "1",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "-l",
    "warning",
)


@dataclass
class Target:
    """One database to benchmark on, with the TaskForge tenant living in it."""

    label: str
    tenant: Tenant

    @property
    def database_url(self) -> str:
        """Where TaskForge and the baseline both write."""
        return self.tenant.database_url


@dataclass
class Context:
    """The run's shared state."""

    config: BenchConfig
    procs: ProcessSet
    redis_url: str
    tmp: Path
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # CPU busy fraction seen just before each measured pair, by label.
    background: dict[str, float] = field(default_factory=dict)
    # Extra measurements that explain a gap (rendered as a second table).
    diagnostics: list[Row] = field(default_factory=list)
    quiet_budget_left: float = 0.0
    # Set when a benchmark raised; the session then keeps its temp dir for the logs.
    failed: bool = False
    # Benchmarks that could not run for want of a tool, with how to get it.
    missing: list[str] = field(default_factory=list)

    @property
    def sqlite(self) -> Target:
        """The SQLite target (always the first)."""
        return self.targets[0]

    def settle(self, label: str) -> float:
        """Wait (bounded) until the machine is quiet; record and return the busy fraction.

        Other work on the 2 cores (a test suite, a build) skews a run; the harness
        cannot stop it, but it can wait for a lull and say in the report when there was none.
        """
        started = time.monotonic()
        wait = min(self.config.quiet_wait_seconds, self.quiet_budget_left)
        busy = cpu_busy()
        while busy > self.config.quiet_threshold and time.monotonic() - started < wait:
            busy = cpu_busy()
        self.quiet_budget_left = max(0.0, self.quiet_budget_left - (time.monotonic() - started))
        self.background[f"{label} #{len(self.background) + 1}"] = busy
        if busy > self.config.quiet_threshold:
            print(f"  (machine busy: {busy:.0%} CPU in use before {label})", flush=True)
        return busy

    def redis(self) -> redis.Redis:
        """A fresh client of the private Redis."""
        return redis.Redis.from_url(self.redis_url)

    def clear_broker(self) -> None:
        """Delete the benchmark queues' messages and counters (never kombu's bindings)."""
        client = self.redis()
        try:
            for pattern in ("tf.*", "bench.*", "bench:*", "unacked*"):
                keys = list(client.scan_iter(match=pattern, count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue, over all priority sub-queues."""
        client = self.redis()
        try:
            depth = BrokerProbe(client).depth(queue)
        finally:
            client.close()
        assert depth is not None, "the benchmark's Redis does not answer"
        return depth

    def start_gunicorn(
        self,
        name: str,
        app_spec: str,
        health_path: str,
        database_url: str,
        *,
        shipped: bool = False,
    ) -> tuple[Proc, int]:
        """Start gunicorn serving ``app_spec``; return it and its port.

        By default with 2 sync workers and TaskForge's rate limits off (the
        benchmark's own settings).  ``shipped``: with the command line and
        environment ``make run`` gives the API (``app.roles``: gthread workers and
        threads, access log, Prometheus multiprocess files, rate limits on, with a
        limit no load here reaches); a baseline app gets the same gunicorn flags
        without TaskForge's own hooks.
        """
        port = free_port()
        argv, env = [*self._gunicorn_argv(port, app_spec, shipped)], {"DATABASE_URL": database_url}
        if shipped:
            from app.roles import role_env

            env = role_env(
                "api",
                {
                    **env,
                    "TASKFORGE_RATE_LIMIT_ENABLED": "true",
                    "TASKFORGE_RATE_LIMIT": SHIPPED_RATE_LIMIT,
                },
                var_dir=self.tmp,
            )
        proc = self.procs.start(name, argv, env)
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}{health_path}"),
            timeout=60,
            what=f"{name} on :{port}",
            proc=proc,
        )
        return proc, port

    def _gunicorn_argv(self, port: int, app_spec: str, shipped: bool) -> list[str]:
        bind = f"127.0.0.1:{port}"
        if not shipped:
            workers = str(self.config.gunicorn_workers)
            return [PYTHON, "-m", "gunicorn", "-w", workers, "-k", "sync", "-b", bind,
                    "--log-level", "warning", app_spec]  # fmt: skip
        from app.config import load_settings
        from app.roles import role_argv

        argv = list(role_argv("api", load_settings(http_bind_address=bind), python=PYTHON))
        if app_spec != SHIPPED_APP:
            hooks = argv.index("--config")
            del argv[hooks : hooks + 2]
            argv[argv.index(SHIPPED_APP)] = app_spec
        return argv

    def start_worker(self, name: str, app_module: str, database_url: str, *extra: str) -> Proc:
        """Start one Celery worker with the benchmark's flags."""
        argv = [PYTHON, "-m", "celery", "-A", app_module, *WORKER_FLAGS, "-n", f"{name}@bench"]
        return self.procs.start(name, [*argv, *extra], {"DATABASE_URL": database_url})
