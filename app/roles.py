"""Process roles: what ``taskforge api|grpc|worker|beat|monitor|migrate`` run.

One definition per role, used twice: ``taskforge ROLE`` execs it (one role per
machine, container or systemd unit) and ``taskforge run`` supervises all of them
on one machine (``app.runner``).  A role is configured only by environment
variables (``app.config.Settings``); ``settings`` names the ones that tune it beyond
those every process reads (``COMMON_SETTINGS``).  docs/deployment.md describes each
role and its health check (``app.probes``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from app.config import VAR_DIR, Settings, split_bind

# Every process validates the whole configuration at start, so these are set everywhere.
COMMON_SETTINGS = (
    "TASKFORGE_ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "TASKFORGE_REDIS_SENTINEL_MASTER",
    "JWT_SECRET_KEY",
    "TASKFORGE_METRICS_TOKEN",
    "TASKFORGE_VAR_DIR",
)
BEAT_LIVENESS_FILE = "beat.alive"


@dataclass(frozen=True)
class Role:
    """One kind of TaskForge process."""

    name: str
    settings: tuple[str, ...] = ()
    # ``python -m`` arguments; None for a role that runs in the ``taskforge`` process.
    args: Callable[[Settings, Path], tuple[str, ...]] | None = None
    # Set for the role's process unless the environment already sets them.
    env: Mapping[str, str] = field(default_factory=dict)


def _api(settings: Settings, _var_dir: Path) -> tuple[str, ...]:
    # gthread, not sync: an open /monitor/events stream holds a thread for up to 30 s,
    # and a sync worker would be pinned by it (docs/monitoring.md, "Event streams").
    return (
        "gunicorn",
        "--bind", settings.http_bind,
        "--workers", str(settings.http_workers),
        "--worker-class", "gthread",
        "--threads", str(settings.http_threads),
        "--graceful-timeout", str(settings.http_graceful_seconds),
        "--config", "python:app.gunicorn_hooks",
        "--access-logfile", "-",
        "wsgi:app",
    )  # fmt: skip


def _worker(settings: Settings, _var_dir: Path) -> tuple[str, ...]:
    return (
        "celery", "-A", "tasks.celery_app", "worker", "-l", "info",
        "-P", settings.worker_pool,
        "-c", str(settings.worker_concurrency),
        "-n", settings.worker_name,
    )  # fmt: skip


def _beat(_settings: Settings, var_dir: Path) -> tuple[str, ...]:
    return (
        "celery", "-A", "tasks.celery_app", "beat", "-l", "info",
        "-s", str(var_dir / "celerybeat-schedule"),
    )  # fmt: skip


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "api",
            (
                "TASKFORGE_HTTP_BIND",
                "TASKFORGE_HTTP_WORKERS",
                "TASKFORGE_HTTP_THREADS",
                "TASKFORGE_HTTP_GRACEFUL_SECONDS",
                "TASKFORGE_TRUSTED_PROXIES",
                "TASKFORGE_CORS_ORIGINS",
                "PROMETHEUS_MULTIPROC_DIR",
            ),
            _api,
        ),
        Role(
            "grpc",
            ("TASKFORGE_GRPC_BIND", "TASKFORGE_GRPC_TLS_CERT", "TASKFORGE_GRPC_TLS_KEY"),
            lambda _settings, _var_dir: ("grpc_service.server",),
        ),
        Role(
            "worker",
            (
                "TASKFORGE_WORKER_NAME",
                "TASKFORGE_WORKER_POOL",
                "TASKFORGE_WORKER_CONCURRENCY",
                "TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS",
                "TASKFORGE_HANDLER_MODULES",
                "TASKFORGE_WORKER_ORGANIZATION",
                "TASKFORGE_WORKER_TYPE",
                "TASKFORGE_LEASE_SECONDS",
            ),
            _worker,
            # SIGTERM starts Celery's cold shutdown, whose soft phase lets running jobs
            # finish for worker_soft_shutdown_timeout before they are handed back; the
            # default warm shutdown would wait for them however long they run.
            {"REMAP_SIGTERM": "SIGQUIT"},
        ),
        Role("beat", (), _beat),
        Role(
            "monitor",
            ("TASKFORGE_MONITOR_BIND", "TASKFORGE_MONITOR_INSPECT_SECONDS"),
            lambda _settings, _var_dir: ("app.monitor",),
        ),
        Role("migrate"),  # runs in the ``taskforge`` process: ``app.migrate``
    )
}
# What `taskforge run` starts, in this order (it migrates in-process first).
RUN_ROLES = ("api", "grpc", "worker", "beat", "monitor")


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (creating it) and return it: metric files of a past run must not count."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def local_address(bind: str) -> str:
    """The ``host:port`` a client on this machine dials to reach a listen address."""
    host, port = split_bind("listen address", bind)
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def role_argv(
    name: str, settings: Settings, *, var_dir: Path = VAR_DIR, python: str = sys.executable
) -> tuple[str, ...]:
    """The full command line of a process role."""
    args = ROLES[name].args
    if args is None:
        raise ValueError(f"the {name} role runs in-process; it has no command line")
    return (python, "-m", *args(settings, var_dir))


def role_env(name: str, environ: Mapping[str, str], *, var_dir: Path = VAR_DIR) -> dict[str, str]:
    """The environment of a role's process: ``environ`` plus the role's own defaults."""
    env = {**ROLES[name].env, **environ}
    if name == "api" and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn's workers add up their metrics through files (prometheus_client's
        # multiprocess mode); a past run's files must not count.
        env["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_dir(var_dir / "prometheus"))
    return env


def exec_role(name: str, settings: Settings, extra_args: Sequence[str] = ()) -> NoReturn:
    """Replace this process with the role's, so signals reach it directly."""
    argv = role_argv(name, settings)
    os.execve(argv[0], [*argv, *extra_args], role_env(name, os.environ))
