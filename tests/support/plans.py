"""The statements a call runs, and the query plans the engine makes of them."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, event

from app.db import _WriterConnection


@contextmanager
def statements_on(engine: Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """Collect the statements (with their parameters) that read ``table``, as they run."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if f"FROM {table}" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def statements_received(engine: Engine) -> Iterator[list[str]]:
    """The first three words of each statement ``engine``'s DBAPI connections send, and COMMITs.

    Seen on the DBAPI connections checked out of ``engine`` inside the block and
    sent by the thread that opened it, so statements sent past SQLAlchemy's
    execution (``app.prepared``) count too, and those of other databases or of
    background threads (a lease keeper's renewal, a publication stamp, another
    test's writer) do not: on SQLite
    their cursors' statements and their ``commit()`` calls (sqlite3's implicit
    ``BEGIN`` is not shown); on PostgreSQL each statement, with `` (autocommit)``
    after those sent outside a transaction.
    """
    seen: list[str] = []
    watched: list[Any] = []
    owner = threading.get_ident()

    def words(statement: Any) -> str:
        return " ".join(str(statement).split()[:3]).upper()

    class SQLiteCursor(sqlite3.Cursor):
        def execute(self, statement: str, *args: Any) -> Any:
            if threading.get_ident() == owner:
                seen.append(words(statement))
            return super().execute(statement, *args)

    class PostgresCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == owner:
                autocommit = " (autocommit)" if self.connection.autocommit else ""
                seen.append(words(query) + autocommit)
            return super().execute(query, *args, **kwargs)

    writer = _WriterConnection
    cursor, commit = writer.cursor, writer.commit

    def is_watched(dbapi_connection: Any) -> bool:
        return any(dbapi_connection is each for each in watched)

    def sqlite_cursor(self: Any, *args: Any, **kwargs: Any) -> Any:
        return cursor(self, SQLiteCursor) if is_watched(self) else cursor(self, *args, **kwargs)

    def sqlite_commit(self: Any) -> None:
        if is_watched(self) and threading.get_ident() == owner:
            seen.append("COMMIT")
        commit(self)

    def watch(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if isinstance(dbapi_connection, psycopg.Connection):
            dbapi_connection.cursor_factory = PostgresCursor
        if not is_watched(dbapi_connection):
            watched.append(dbapi_connection)

    writer.cursor, writer.commit = sqlite_cursor, sqlite_commit  # type: ignore[method-assign]
    event.listen(engine, "checkout", watch)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", watch)
        writer.cursor, writer.commit = cursor, commit  # type: ignore[method-assign]
        for dbapi_connection in watched:
            if isinstance(dbapi_connection, psycopg.Connection):
                dbapi_connection.cursor_factory = psycopg.Cursor


def selects_from(engine: Engine, table: str, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The ``SELECT`` statements (with their parameters) that ``call`` runs on ``table``."""
    with statements_on(engine, table) as seen:
        call()
    return [(statement, parameters) for statement, parameters in seen if _is_select(statement)]


def _is_select(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT")


def explain(connection: Connection, statement: str, parameters: Any) -> str:
    """The plan of ``statement``; on PostgreSQL with scans and sorts that need no index disabled.

    On a table this small PostgreSQL picks a sequential or bitmap scan and a sort
    whatever indexes exist (depending on the statistics other tests left); with
    them disabled, what the plan shows is whether an index path exists.  Call it
    inside a transaction: the settings are ``SET LOCAL``.
    """
    if connection.dialect.name == "postgresql":
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            connection.exec_driver_sql(f"SET LOCAL {setting} = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        return "\n".join(row[0] for row in rows)
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return "\n".join(row[-1] for row in rows)
