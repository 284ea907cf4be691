"""A pooled PostgreSQL connection: no round trip at checkout, replaced once the server closed it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from app.db import get_engine
from tests.support.postgres import terminate_backend

MARKER = "SELECT pg_backend_pid() AS the_last_statement_sent"


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The process's engine for the test database, with an empty pool."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to lose a connection to")
    engine = get_engine(database_url)
    engine.dispose()
    return engine


@pytest.fixture
def observer(database_url: str) -> Iterator[Engine]:
    """A connection of its own, outside the pool under test."""
    engine = create_engine(database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _last_statement(observer: Engine, pid: int) -> str | None:
    with observer.connect() as connection:
        return connection.execute(
            text("SELECT query FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one_or_none()


def test_a_checkout_sends_nothing_on_a_live_connection(engine: Engine, observer: Engine) -> None:
    with engine.connect() as connection:
        pid = connection.execute(text(MARKER)).scalar_one()
    returned = _last_statement(observer, pid)  # the pool's reset when the connection came back
    with engine.connect() as connection:
        assert _last_statement(observer, pid) == returned, "the checkout sent nothing"
        assert connection.execute(text(MARKER)).scalar_one() == pid, "the pool's one connection"


def test_a_connection_the_server_closed_is_replaced_at_checkout(
    engine: Engine, observer: Engine
) -> None:
    with engine.connect() as connection:
        pid = connection.execute(text(MARKER)).scalar_one()
    terminate_backend(observer, pid)
    with engine.connect() as connection:
        assert connection.execute(text(MARKER)).scalar_one() != pid
