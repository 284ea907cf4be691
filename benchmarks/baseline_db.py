"""The baselines' table: one row per submitted job, in the same database as TaskForge.

The engine mirrors ``app/db.py`` on purpose (pool 8 + 8 overflow; on SQLite WAL,
``synchronous=NORMAL``, ``busy_timeout=30000``) but is written out here, so the
baseline stays a fixed yardstick whatever TaskForge's code does.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url

metadata = MetaData()

bench_jobs = Table(
    "bench_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("queue", String(100), nullable=False),
    Column("job_type", String(100), nullable=False),
    Column("payload", Text),
    Column("status", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The tracked baseline's jobs: a raw Celery task claims its row and records its
# success, each with one UPDATE (``benchmarks.baseline_celery.tracked``).  Times are
# ``time.time()`` floats.
bench_tracked = Table(
    "bench_tracked",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """Create an engine for ``url`` (default ``$DATABASE_URL``) with TaskForge's settings."""
    url = url or os.environ["DATABASE_URL"]
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8)


def ensure_table(engine: Engine) -> None:
    """Create ``bench_jobs`` when missing."""
    metadata.create_all(engine, tables=[bench_jobs])
