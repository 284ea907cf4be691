"""The statements a call runs on a table, and the query plans the engine makes of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, event


def selects_from(engine: Engine, table: str, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The ``SELECT`` statements (with their parameters) that ``call`` runs on ``table``."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


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
