"""The statements a call runs on a table, and the query plans the engine makes of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event


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
