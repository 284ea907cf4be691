"""A PostgreSQL backend ended from outside, as a server restart or a DBA would end it."""

from __future__ import annotations

from sqlalchemy import Engine, text

from tests.support.workers import wait_for


def terminate_backend(observer: Engine, pid: int) -> None:
    """End the backend ``pid`` from ``observer``'s own connection and wait until it has gone."""
    with observer.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    wait_for(lambda: not _present(observer, pid), 10, "the backend did not exit")


def _present(observer: Engine, pid: int) -> bool:
    with observer.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar()
    return found is not None
