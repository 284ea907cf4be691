"""Core statements compiled once per dialect and run on the DBAPI connection.

A tracked job costs its worker a claim and a success: two or four small fixed
statements.  Run through ``Connection.execute``, SQLAlchemy's work around each
cached statement (the execution context, parameter and result processing,
events, the transaction's bookkeeping) cost about as much as SQLite's own.
Measured in-process on SQLite, the claim took 255 µs and the success 183 µs
that way, 181 µs and 127 µs this way (the same SQL typed into ``sqlite3`` by
hand: 108 µs and 72 µs), and a tracked worker drained at 0.59 of raw Celery's
rate instead of 0.48 (docs/performance.md, "The worker's statements skip
SQLAlchemy's execution").  SQLAlchemy has no public "prepared statement" that
skips that work, so this module is the narrow part written by hand.

It sends exactly what SQLAlchemy would send.  The engine's dialect compiles the
Core statement once; values go through the types' own bind and result
processors; a DBAPI error comes out as SQLAlchemy's (``DBAPIError.instance``),
and a connection that lost its server is invalidated, so callers keep catching
``SQLAlchemyError`` and asking :func:`app.db.is_unavailable`.  The connection
comes from the engine's pool (its checkout events and fork handling apply), and
on SQLite the transaction takes the host's writer turn before its first
statement, as every write transaction does (:func:`app.db.hold_writer_turn`).
A statement that needs SQLAlchemy while it runs (Python-side defaults, an
expanding ``IN``, ``literal_execute``) is refused when it is first compiled.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

from app.db import get_engine, hold_writer_turn

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """One statement as one dialect runs it."""

    sql: str
    # Bound values that come from the statement itself, already processed.
    fixed: dict[str, Any]
    # (name in the SQL, parameter key, bind processor) of each value the caller gives.
    given: tuple[tuple[str, str, Processor | None], ...]
    # Names in the order of the SQL's placeholders; None for a named paramstyle.
    order: tuple[str, ...] | None
    row: Callable[..., tuple[Any, ...]] | None
    results: tuple[Processor | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        bound = dict(self.fixed)
        for name, key, process in self.given:
            try:
                value = values[key]
            except KeyError:
                raise InvalidRequestError(
                    f"A value is required for bind parameter {key!r}"
                ) from None
            bound[name] = value if process is None else process(value)
        if self.order is None:
            return bound
        return tuple(bound[name] for name in self.order)

    def load(self, raw: Any) -> tuple[Any, ...]:
        assert self.row is not None
        return self.row(
            *(
                value if process is None else process(value)
                for process, value in zip(self.results, raw, strict=True)
            )
        )


class Prepared:
    """A Core statement, compiled once for each dialect that runs it."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        # By dialect object, one per engine: what it learnt of its server at the
        # first connection (its version, the features it has) shapes the SQL.
        self._by_dialect: dict[Dialect, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        """The statement as ``dialect`` runs it (compiled on first use)."""
        compiled = self._by_dialect.get(dialect)
        if compiled is None:
            compiled = self._by_dialect[dialect] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if (
            compiled.insert_prefetch
            or compiled.update_prefetch
            or compiled.literal_execute_params
            or compiled.post_compile_params
        ):
            raise ArgumentError(
                "A prepared statement runs without SQLAlchemy: give every column a value "
                "and use no expanding or literal_execute parameter"
            )
        escaped = compiled.escaped_bind_names
        fixed: dict[str, Any] = {}
        given: dict[str, tuple[str, str, Processor | None]] = {}
        for bind, name in compiled.bind_names.items():
            name = escaped.get(name, name)
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                given[name] = (name, bind.key, process)
            else:
                value = bind.effective_value
                fixed[name] = value if process is None else process(value)
        # A SELECT's columns, or the RETURNING columns of an INSERT, UPDATE or DELETE.
        columns = list(self.statement.exported_columns)
        return _Compiled(
            sql=compiled.string,
            fixed=fixed,
            given=tuple(given.values()),
            order=tuple(escaped.get(name, name) for name in compiled.positiontup or ())
            if compiled.positional
            else None,
            row=namedtuple("Row", [column.key or "_" for column in columns], rename=True)
            if columns
            else None,
            results=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            ),
        )


class Writer:
    """Run prepared statements in one write (see :func:`write`)."""

    def __init__(self, dialect: Dialect, pooled: PoolProxiedConnection) -> None:
        self.dialect = dialect
        self._pooled = pooled

    def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> int:
        """Run an INSERT, UPDATE or DELETE; return how many rows it changed."""
        return int(self._run(prepared.compiled(self.dialect), values, fetch=False))

    def one_or_none(self, prepared: Prepared, values: Mapping[str, Any]) -> Any:
        """Run a statement that returns at most one row; return that row, or None."""
        compiled = prepared.compiled(self.dialect)
        raw = self._run(compiled, values, fetch=True)
        return None if raw is None else compiled.load(raw)

    def _run(self, compiled: _Compiled, values: Mapping[str, Any], *, fetch: bool) -> Any:
        parameters = compiled.parameters(values)
        with translated(self.dialect, self._pooled, compiled.sql, parameters):
            cursor = self._pooled.cursor()
            try:
                cursor.execute(compiled.sql, parameters)
                return cursor.fetchone() if fetch else cursor.rowcount
            finally:
                cursor.close()


@contextmanager
def translated(
    dialect: Dialect, pooled: PoolProxiedConnection | None, sql: str | None, parameters: Any = None
) -> Iterator[None]:
    """Raise a DBAPI error as SQLAlchemy would, invalidating a connection that lost its server.

    ``pooled`` is None while the connection is being checked out (a connect error).
    """
    base = dialect.loaded_dbapi.Error
    try:
        yield
    except base as exc:
        lost = dialect.is_disconnect(exc, pooled and pooled.dbapi_connection, None)
        if lost and pooled is not None:
            pooled.invalidate(exc)
        raise DBAPIError.instance(
            sql, parameters, exc, base, connection_invalidated=lost, dialect=dialect
        ) from exc


@contextmanager
def write(database_url: str) -> Iterator[Writer]:
    """One write on a pooled connection, committed when the block ends, rolled back if it raises.

    On PostgreSQL the connection autocommits: every statement is its own
    transaction, with no BEGIN and COMMIT round trips, so a block there runs one
    statement (a data-modifying CTE writes two tables at once).  On SQLite the
    block is one transaction holding the host's writer turn.
    """
    engine = get_engine(database_url)
    dialect = engine.dialect
    autocommit = dialect.name == "postgresql"
    with translated(dialect, None, None):
        pooled = engine.raw_connection()
    connection = pooled.dbapi_connection
    assert connection is not None, "a connection fresh from the pool is open"
    try:
        if autocommit:
            with translated(dialect, pooled, "SET AUTOCOMMIT"):
                dialect.set_isolation_level(connection, "AUTOCOMMIT")
        else:
            hold_writer_turn(connection, engine)
        yield Writer(dialect, pooled)
        if not autocommit:
            with translated(dialect, pooled, "COMMIT"):
                connection.commit()
    finally:
        # A block that raised is rolled back as the pool takes the connection back
        # (its reset), which also gives SQLite's writer turn back.  A connection
        # that cannot leave autocommit is dropped, as the pool drops one whose
        # reset fails: what the block wrote stays written.
        if autocommit and pooled.is_valid:
            try:
                dialect.reset_isolation_level(connection)
            except dialect.loaded_dbapi.Error as exc:
                pooled.invalidate(exc)
        pooled.close()
