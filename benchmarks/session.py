"""Set up and tear down one benchmark session: temp dir, private Redis, tenants.

``open_session`` sets the environment TaskForge reads at import (so call it before
importing ``app`` or ``tasks``), starts Redis, prepares the TaskForge tenant(s)
and, whatever happens, stops every process it or the benchmarks started.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.context import PROJECT_ROOT, Context, Target
from benchmarks.postgres import throwaway_cluster
from benchmarks.procs import ProcessSet, free_port


def environment(tmp: Path, redis_url: str, database_url: str) -> dict[str, str]:
    """Settings shared by the harness and every child (TaskForge reads them at import)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TASKFORGE_VAR_DIR": str(tmp),
        # The default 1200/min per user would throttle the load; see docs/performance.md.
        "TASKFORGE_RATE_LIMIT_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def open_session(config: BenchConfig, *, with_postgres: bool = False) -> Iterator[Context]:
    """Yield a ready :class:`Context`; stop its processes and Redis on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="taskforge-bench-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    sqlite_url = f"sqlite:///{tmp / 'taskforge.db'}"
    os.environ.update(environment(tmp, redis_url, sqlite_url))
    if config.nice:
        os.setpriority(os.PRIO_PROCESS, 0, config.nice)  # Redis and every child inherit it

    from app.redis_server import start_redis
    from benchmarks.tenant import prepare

    (tmp / "logs").mkdir()
    procs = ProcessSet(tmp / "logs", dict(os.environ), PROJECT_ROOT)
    redis_proc = start_redis(redis_port, tmp / "redis", appendonly=False)
    ctx = Context(config=config, procs=procs, redis_url=redis_url, tmp=tmp)
    ctx.quiet_budget_left = config.quiet_budget_seconds
    failed = True
    cleanup = ExitStack()
    try:
        redis_proc.wait_ready()
        print(f"temp dir {tmp}; Redis pid {redis_proc.pid} on :{redis_port}", flush=True)
        ctx.targets.append(Target("SQLite", prepare(sqlite_url, redis_url)))
        if with_postgres:
            postgres_url = config.postgres_url or cleanup.enter_context(throwaway_cluster())
            if postgres_url:
                ctx.targets.append(Target("PostgreSQL", prepare(postgres_url, redis_url)))
            else:
                ctx.notes.append(
                    "PostgreSQL rows skipped: set BENCH_POSTGRES_URL or install PostgreSQL "
                    "(apt-get install postgresql) for a throwaway cluster"
                )
        yield ctx
        failed = ctx.failed
    finally:
        procs.stop_all()
        cleanup.close()
        redis_proc.stop()
        if config.keep_tmp or failed:
            print(f"logs and data kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
