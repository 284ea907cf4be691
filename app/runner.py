"""Run the whole TaskForge stack on this machine: the supervisor behind ``make run``.

It starts a private Redis (unless ``REDIS_URL`` is set), applies migrations, then runs
the API (gunicorn), the gRPC server, one Celery worker, Celery beat and the monitor
(``python -m app.monitor``) as children, prefixing their output with their names.  Every
child shares a fresh ``PROMETHEUS_MULTIPROC_DIR`` under ``var/`` so one scrape of
``/api/v1/metrics`` adds up all of them.  Ctrl-C or SIGTERM stops them all; if one dies,
the others are stopped too and the exit code is non-zero.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from app.config import PROJECT_ROOT, VAR_DIR, ConfigError, load_settings
from app.redis_server import RedisProcess, RedisStartError, start_redis

PRIVATE_REDIS_PORT = 6399
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class ChildSpec:
    """A child process: its name, ``python -m`` arguments and a file it needs, if any."""

    name: str
    args: tuple[str, ...]
    requires: str | None = None


# One line per child; {http_port}, {grpc_port} and {var_dir} are filled in by plan_children.
# fmt: off
CHILDREN: tuple[ChildSpec, ...] = (
    # gthread, not sync: an open /monitor/events stream holds a thread for up to 30 s,
    # and a sync worker would be pinned by it (docs/monitoring.md, "Event streams").
    ChildSpec("api", ("gunicorn", "--bind", "127.0.0.1:{http_port}", "--workers", "2",
                      "--worker-class", "gthread", "--threads", "8",
                      "--config", "python:app.gunicorn_hooks", "--access-logfile", "-",
                      "wsgi:app")),
    ChildSpec("grpc", ("grpc_service.server",), requires="grpc_service/server.py"),
    ChildSpec("worker", ("celery", "-A", "tasks.celery_app", "worker", "-l", "info", "-c", "2",
                         "-n", "taskforge@%h")),
    ChildSpec("beat", ("celery", "-A", "tasks.celery_app", "beat", "-l", "info",
                       "-s", "{var_dir}/celerybeat-schedule")),
    ChildSpec("monitor", ("app.monitor",)),
)
# fmt: on


@dataclass(frozen=True)
class PlannedChild:
    """A child ready to spawn: its name and full argv."""

    name: str
    argv: tuple[str, ...]


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """Return the port in ``env[name]``, or ``default`` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a TCP port number, got {raw!r}")
    return int(raw)


def plan_children(
    env: Mapping[str, str],
    *,
    root: Path = PROJECT_ROOT,
    var_dir: Path = VAR_DIR,
    python: str = sys.executable,
    specs: tuple[ChildSpec, ...] = CHILDREN,
) -> tuple[list[PlannedChild], list[str]]:
    """Return the children to start and a note for each one skipped."""
    values = {
        "http_port": env_port(env, "TASKFORGE_HTTP_PORT", 8000),
        "grpc_port": env_port(env, "TASKFORGE_GRPC_PORT", 50051),
        "var_dir": str(var_dir),
    }
    planned: list[PlannedChild] = []
    skipped: list[str] = []
    for spec in specs:
        if spec.requires and not (root / spec.requires).is_file():
            skipped.append(f"skipping {spec.name}: {spec.requires} does not exist yet")
            continue
        args = tuple(arg.format(**values) for arg in spec.args)
        planned.append(PlannedChild(spec.name, (python, "-m", *args)))
    return planned, skipped


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (creating it) and return it: metric files of a past run must not count."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def banner(http_port: int, grpc_port: int) -> str:
    """Return the URLs and the how-to-log-in hint printed once everything started."""
    api = f"http://127.0.0.1:{http_port}/api/v1"
    user = '"email": "me@example.com", "password": "change-me-now"'
    return f"""\
REST API     {api}
OpenAPI UI   {api}/docs
gRPC         127.0.0.1:{grpc_port}
Dashboard    http://127.0.0.1:{http_port}/dashboard
Metrics      {api}/metrics
How to log in: register once, log in, then send the access_token:
  curl --json '{{{user}, "organization_name": "Acme"}}' {api}/auth/register
  curl --json '{{{user}}}' {api}/auth/login
  curl -H 'Authorization: Bearer <access_token>' {api}/queues"""


class Supervisor:
    """Start the children, relay their output, and stop everything together."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[str]]] = []
        self.pumps: list[threading.Thread] = []
        self.redis: RedisProcess | None = None
        self.signals = 0
        self.signal_name = ""
        self.lock = threading.Lock()
        self.width = max(len("taskforge"), *(len(spec.name) for spec in CHILDREN))
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

    def spawn(self, child: PlannedChild, env: dict[str, str]) -> None:
        """Start one child in its own process group, so Ctrl-C reaches only us."""
        process = subprocess.Popen(
            child.argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.children.append((child.name, process))
        pump = threading.Thread(target=self.pump, args=(child.name, process.stdout), daemon=True)
        pump.start()
        self.pumps.append(pump)

    def watch(self) -> str | None:
        """Wait for a signal or a dead child; return why a child died, if one did."""
        while not self.signals:
            if self.redis is not None and not self.redis.is_running():
                return f"the private Redis exited (see {self.redis.log_path})"
            for name, process in self.children:
                code = process.poll()
                if code is not None:
                    return f"{name} exited unexpectedly with code {code}"
            time.sleep(0.2)
        return None

    def stop_children(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every child, wait up to ``timeout`` seconds, then SIGKILL the rest."""
        if self.signals:
            self.log("taskforge", f"{self.signal_name} received, stopping (again to force)…")
        for name, process in reversed(self.children):
            if process.poll() is None:
                self.log("taskforge", f"stopping {name} (pid {process.pid})")
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        stop_after = self.signals + 1  # one more Ctrl-C means "kill now"
        while time.monotonic() < deadline and self.signals < stop_after:
            if all(process.poll() is not None for _, process in self.children):
                break
            time.sleep(0.1)
        for name, process in self.children:
            if process.poll() is None:
                self.log("taskforge", f"killing {name}")
            # Also reaps helpers a child left behind (gunicorn or Celery pool processes).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
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
            children, skipped = plan_children(os.environ)
            if not os.environ.get("REDIS_URL"):
                self.redis = start_redis(PRIVATE_REDIS_PORT, VAR_DIR / "redis")
                self.redis.wait_ready(10.0)
                os.environ["REDIS_URL"] = self.redis.url  # children inherit it
                self.log("taskforge", f"private Redis at {self.redis.url}, data in {VAR_DIR}/redis")
            from app.migrate import upgrade  # imports the models: only now, not for tests

            settings = load_settings()
            self.log("taskforge", "applying database migrations…")
            upgrade(settings.database_url)
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PROMETHEUS_MULTIPROC_DIR": str(fresh_dir(VAR_DIR / "prometheus")),
            }
            for note in skipped:
                self.log("taskforge", note)
            for child in children:
                if not self.signals:
                    self.spawn(child, env)
            if not self.signals:
                self.log("taskforge", banner(settings.http_port, settings.grpc_port))
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


def run_all() -> int:
    """Run the whole TaskForge stack in the foreground; return the exit code."""
    return Supervisor().run()


if __name__ == "__main__":
    sys.exit(run_all())
