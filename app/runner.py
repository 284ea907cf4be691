"""Run the whole TaskForge stack on this machine: the supervisor behind ``make run``.

It starts a private Redis (unless ``REDIS_URL`` is set), applies migrations, then runs
every process role (``app.roles``: the API under gunicorn, the gRPC server, one Celery
worker, Celery beat and the monitor) as children, exactly as ``taskforge ROLE`` runs
them, prefixing their output with their names.  Every
child shares a fresh ``PROMETHEUS_MULTIPROC_DIR`` under ``var/`` so one scrape of
``/api/v1/metrics`` adds up all of them.  A child that dies is started again after a
short backoff, the others keep serving (``RestartPolicy``); one that keeps crashing
right after it starts stops everything with a non-zero exit code.  A private Redis that
dies is restarted on its port and data.  Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from app.config import PROJECT_ROOT, VAR_DIR, ConfigError, Settings, load_settings
from app.redis_server import RedisProcess, RedisStartError, start_redis
from app.roles import ROLES, RUN_ROLES, fresh_dir, local_address, role_argv

PRIVATE_REDIS_PORT = 6399
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class PlannedChild:
    """A child ready to spawn: its name, full argv and the environment it adds."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """Return the port in ``env[name]``, or ``default`` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


def plan_children(
    settings: Settings, *, var_dir: Path = VAR_DIR, python: str = sys.executable
) -> list[PlannedChild]:
    """Return the children to start: every process role, as ``taskforge ROLE`` runs it."""
    return [
        PlannedChild(
            name, role_argv(name, settings, var_dir=var_dir, python=python), ROLES[name].env
        )
        for name in RUN_ROLES
    ]


def banner(http_bind: str, grpc_bind: str, metrics_token: str = "") -> str:
    """Return the URLs and the how-to-log-in hint printed once everything started."""
    http = local_address(http_bind)
    api = f"http://{http}/api/v1"
    user = '"email": "me@example.com", "password": "change-me-now"'
    scrape = (
        f"{api}/metrics (open: TASKFORGE_METRICS_PUBLIC)"
        if not metrics_token
        else f"{api}/metrics\n  bearer token: {metrics_token}"
    )
    return f"""\
REST API     {api}
OpenAPI UI   {api}/docs
gRPC         {local_address(grpc_bind)}
Dashboard    http://{http}/dashboard
Metrics      {scrape}
How to log in: register once, log in, then send the access_token:
  curl --json '{{{user}, "organization_name": "Acme"}}' {api}/auth/register
  curl --json '{{{user}}}' {api}/auth/login
  curl -H 'Authorization: Bearer <access_token>' {api}/queues"""


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again, and when the supervisor gives up.

    A child that ran at least ``stable_after`` seconds had a good run: its next crash
    is restarted after ``first_delay``.  Each crash sooner than that doubles the delay
    (up to ``max_delay``); after ``max_fast_failures`` such crashes in a row the child
    is broken, not unlucky, and everything stops.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 30.0
    max_fast_failures: int = 5

    def delay(self, fast_failures: int) -> float:
        """Seconds to wait before the restart that follows ``fast_failures`` quick crashes."""
        return float(min(self.max_delay, self.first_delay * 2 ** (fast_failures - 1)))


@dataclass(eq=False)
class Child:
    """A supervised child: what to run, the process now running, and its crash record."""

    planned: PlannedChild
    process: subprocess.Popen[str]
    started_at: float
    fast_failures: int = 0
    restart_at: float | None = None

    @property
    def name(self) -> str:
        """The child's name, as its log lines show it."""
        return self.planned.name


class Supervisor:
    """Start the children, relay their output, restart the ones that die, stop them together."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self.pumps: list[threading.Thread] = []
        self.redis: RedisProcess | None = None
        self.redis_failures = 0
        self.signals = 0
        self.signal_name = ""
        self.lock = threading.Lock()
        self.width = max(len("taskforge"), *(len(name) for name in RUN_ROLES))
        self.stop_timeout = STOP_TIMEOUT
        self.color = sys.stdout.isatty()

    def log(self, name: str, line: str) -> None:
        """Print one line prefixed with the name of its source."""
        prefix = f"{name:<{self.width}} |"
        if self.color:
            prefix = f"\033[{31 + sum(map(ord, name)) % 6}m{prefix}\033[0m"
        with self.lock:
            for part in line.splitlines() or [""]:
                print(f"{prefix} {part}", flush=True)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Ask for a shutdown; a second signal skips the graceful wait."""
        # No printing here: the handler may interrupt a print in the main thread.
        self.signals += 1
        self.signal_name = signal.Signals(signum).name

    def pump(self, name: str, stream: IO[str]) -> None:
        """Relay a child's output line by line until it closes."""
        with stream:
            for line in stream:
                self.log(name, line.rstrip("\n"))

    def _popen(self, child: PlannedChild, env: dict[str, str]) -> subprocess.Popen[str]:
        """Start one process in its own process group, so Ctrl-C reaches only us."""
        process = subprocess.Popen(
            child.argv,
            cwd=PROJECT_ROOT,
            env={**child.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        pump = threading.Thread(target=self.pump, args=(child.name, process.stdout), daemon=True)
        pump.start()
        self.pumps.append(pump)
        self.log("taskforge", f"started {child.name} (pid {process.pid})")
        return process

    def spawn(self, child: PlannedChild, env: dict[str, str]) -> Child:
        """Start and supervise one child."""
        self.env = env
        supervised = Child(child, self._popen(child, env), time.monotonic())
        self.children.append(supervised)
        return supervised

    def _schedule_restart(self, child: Child, code: int, now: float) -> str | None:
        """Plan the restart of a child that exited; return why not when it keeps failing."""
        # Pool processes or gunicorn workers of a killed main process would hold its
        # port or its jobs: the whole process group goes before the restart.
        _kill_group(child.process)
        if now - child.started_at >= self.policy.stable_after:
            child.fast_failures = 0
        child.fast_failures += 1
        if child.fast_failures > self.policy.max_fast_failures:
            return (
                f"{child.name} crashed {child.fast_failures} times in a row, each within "
                f"{self.policy.stable_after:g}s of starting (last exit code {code}): giving up"
            )
        delay = self.policy.delay(child.fast_failures)
        self.log("taskforge", f"{child.name} exited with code {code}; restarting in {delay:g}s")
        child.restart_at = now + delay
        return None

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        child.started_at = now
        child.process = self._popen(child.planned, self.env)

    def _watch_redis(self) -> str | None:
        """Restart the private Redis in place if it died (its AOF keeps the broker's data)."""
        if self.redis is None or self.redis.is_running():
            return None
        self.redis_failures += 1
        if self.redis_failures > self.policy.max_fast_failures:
            return f"the private Redis keeps exiting (see {self.redis.log_path})"
        self.log("taskforge", f"the private Redis exited; restarting it on {self.redis.url}")
        self.redis = start_redis(self.redis.port, self.redis.data_dir)
        self.redis.wait_ready(10.0)
        return None

    def watch(self) -> str | None:
        """Supervise until a signal arrives or a child keeps failing; return that failure."""
        while not self.signals:
            failure = self._watch_redis()
            now = time.monotonic()
            for child in self.children:
                if failure:
                    break
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._restart(child, now)
                    continue
                code = child.process.poll()
                if code is not None:
                    failure = self._schedule_restart(child, code, now)
            if failure:
                return failure
            time.sleep(0.2)
        return None

    def stop_children(self, timeout: float | None = None) -> None:
        """SIGTERM every child, wait up to ``timeout`` seconds, then SIGKILL the rest."""
        timeout = self.stop_timeout if timeout is None else timeout
        if self.signals:
            self.log("taskforge", f"{self.signal_name} received, stopping (again to force)…")
        processes = [(child.name, child.process) for child in self.children]
        for name, process in reversed(processes):
            if process.poll() is None:
                self.log("taskforge", f"stopping {name} (pid {process.pid})")
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        stop_after = self.signals + 1  # one more Ctrl-C means "kill now"
        while time.monotonic() < deadline and self.signals < stop_after:
            if all(process.poll() is not None for _, process in processes):
                break
            time.sleep(0.1)
        for name, process in processes:
            if process.poll() is None:
                self.log("taskforge", f"killing {name}")
            # Also reaps helpers a child left behind (gunicorn or Celery pool processes).
            _kill_group(process)
            process.wait()
        for thread in self.pumps:
            thread.join(timeout=2.0)

    def run(self) -> int:
        """Run the stack until a signal or a failure; return the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.on_signal)
        failure: str | None = None
        try:
            VAR_DIR.mkdir(parents=True, exist_ok=True)
            # Refuse a bad configuration before starting anything.  This also makes the
            # development secrets in var/secrets/ before any child reads them.
            load_settings()
            if not os.environ.get("REDIS_URL"):
                port = env_port(os.environ, "TASKFORGE_REDIS_PORT", PRIVATE_REDIS_PORT)
                self.redis = start_redis(port, VAR_DIR / "redis")
                self.redis.wait_ready(10.0)
                os.environ["REDIS_URL"] = self.redis.url  # children inherit it
                self.log("taskforge", f"private Redis at {self.redis.url}, data in {VAR_DIR}/redis")
            from app.migrate import upgrade  # imports the models: only now, not for tests

            settings = load_settings()
            # A stopping worker may wait out its soft shutdown before it hands jobs back.
            self.stop_timeout = max(STOP_TIMEOUT, settings.worker_soft_shutdown_seconds + 10.0)
            self.log("taskforge", "applying database migrations…")
            upgrade(settings.database_url)
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PROMETHEUS_MULTIPROC_DIR": str(fresh_dir(VAR_DIR / "prometheus")),
            }
            for child in plan_children(settings):
                if not self.signals:
                    self.spawn(child, env)
            if not self.signals:
                self.log(
                    "taskforge",
                    banner(settings.http_bind, settings.grpc_bind, settings.metrics_token),
                )
            failure = self.watch()
        except (RedisStartError, ConfigError, ValueError) as exc:
            failure = f"could not start: {exc}"
        except Exception as exc:
            traceback.print_exc()
            failure = f"could not start: {type(exc).__name__}: {exc}"
        finally:
            if failure:
                self.log("taskforge", f"ERROR: {failure}\nstopping everything")
            self.stop_children()
            if self.redis is not None:
                self.log("taskforge", "stopping private Redis")
                self.redis.stop()
        self.log("taskforge", "stopped" if failure is None else "stopped after a failure")
        return 0 if failure is None else 1


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a child's whole process group (it leads one: ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run_all() -> int:
    """Run the whole TaskForge stack in the foreground; return the exit code."""
    return Supervisor().run()


if __name__ == "__main__":
    sys.exit(run_all())
