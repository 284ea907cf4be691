"""Engines and sessions.

One engine per process and URL (SQLAlchemy's pool is reused by every request,
gRPC call and task).  Services receive a ``Session`` and only ``flush()``; the
edge that opened the session commits: REST per request (``app/api``), gRPC and
Celery through :func:`session_scope`.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Executable, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool

from app.errors import Conflict, TaskForgeError, Unavailable

UNAVAILABLE_MESSAGE = "The database is unavailable; try again shortly"
# What a unique constraint of each table guards, for the answer to a lost race.
_DUPLICATE_MESSAGES = {
    "queues": "A queue with this name already exists in the organization",
    "projects": "A project with this name already exists in the organization",
    "users": "A user with this email already exists",
    "jobs": "A job with this idempotency key already exists",
}
_CONFLICT_MESSAGE = "The change conflicts with a concurrent one; retry"
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout makes a second
    # writer wait instead of failing; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Statement journals and RETURNING's rows stay in memory: with temporary files
    # every job's claim created, wrote and unlinked one (measured with strace).
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_SESSIONMAKERS: dict[str, sessionmaker[Session]] = {}
_LOCK = threading.Lock()
_INHERITED_POOLS: list[Pool] = []


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            # One connection per thread (SingletonThreadPool), which takes no pool sizes.
            engine = create_engine(url)
        else:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                pool_size=8,
                max_overflow=8,
                connect_args={"factory": _WriterConnection},
            )
            _take_writer_turns(engine, parsed.database)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        pool_size=8,
        max_overflow=8,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
    dialect = engine.dialect

    @event.listens_for(engine, "checkout")
    def ping_if_stirred(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        """Ping a pooled connection at checkout only when its socket says something.

        ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: one more round trip
        per request, two per job on a worker (its claim and its success are one
        statement each), measured at 20% of their time.  An idle connection's
        socket has nothing to read until the server speaks: a restart,
        ``pg_terminate_backend`` or an idle timeout sends its FATAL message and
        closes the socket, which a zero-timeout poll sees without a round trip.
        Only then is the ping sent; when it fails, the pool drops the connection
        and checks out another (SQLAlchemy's pessimistic disconnect handling).  A
        server gone without closing its sockets (a network partition) is seen by
        neither this nor a ping before the ping's own timeout.
        """
        if not _socket_stirred(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the server closed the connection") from exc

    return engine


def _socket_stirred(dbapi_connection: Any) -> bool:
    """Tell whether an idle connection's socket is closed or has something to read."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def get_engine(url: str) -> Engine:
    """Return the process-wide engine for ``url``, creating it once."""
    engine = _ENGINES.get(url)
    if engine is None:
        with _LOCK:
            engine = _ENGINES.get(url)
            if engine is None:
                engine = _ENGINES[url] = _create_engine(url)
    return engine


def session_factory(url: str) -> sessionmaker[Session]:
    """Return the session factory bound to the engine for ``url``."""
    maker = _SESSIONMAKERS.get(url)
    if maker is None:
        maker = _SESSIONMAKERS[url] = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    return maker


def dispose_engines() -> None:
    """Give every engine a new, empty pool; a forked child must not reuse its parent's connections.

    The parent's pools stay referenced in the child for good: collecting them would
    close the inherited connections there, and sqlite3 closes on deallocation,
    touching locks and the write-ahead log its parent is still using.
    """
    for engine in list(_ENGINES.values()):
        _INHERITED_POOLS.append(engine.pool)
        engine.dispose(close=False)


class _Turn:
    """This process's place among the host's writers of one SQLite file.

    An ``flock`` on ``<database file>-writer`` is held by one process of the host
    at a time; this process's threads queue on a thread lock before it, since
    ``flock`` belongs to the open file and would not keep them apart.  The
    thread that holds the turn may join it again (a second connection, or
    :func:`sqlite_writer` around a transaction that takes it itself): each join
    is one holder, and the last holder's :meth:`give_back` lets the next writer
    go.  Any thread may give a holder back (the pool may roll a connection back
    from another thread), so the thread lock is a plain ``Lock``, not an ``RLock``.
    """

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.descriptor = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._queue = threading.Lock()
        self._state = threading.Lock()
        self._owner: int | None = None
        self._holders = 0

    def take(self) -> None:
        """Wait until this host's other writers are done; join at once if this thread holds it."""
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._holders += 1
                return
        self._queue.acquire()
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        except BaseException:
            self._queue.release()
            raise
        with self._state:
            self._owner, self._holders = me, 1

    def give_back(self) -> None:
        """Drop one holder; the last one lets the next writer of the host go."""
        if os.getpid() != self.pid:
            # A forked child's copy of its parent's turn: the child closed the
            # descriptor at fork and its parent gives the turn back itself.
            return
        with self._state:
            self._holders -= 1
            if self._holders:
                return
            self._owner = None
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            self._queue.release()


# This process's turn of each SQLite file, by pid and path as given, and by pid and
# real path: two spellings of one file (relative, absolute, a symlink) must share one
# turn, since a second descriptor's flock would wait for this process's own first one.
_WRITER_LOCKS: dict[tuple[int, str], _Turn] = {}
_TURNS_BY_FILE: dict[tuple[int, str], _Turn] = {}


def _turn(path: str) -> _Turn:
    key = (os.getpid(), path)
    turn = _WRITER_LOCKS.get(key)
    if turn is None:
        with _LOCK:
            turn = _WRITER_LOCKS.get(key)
            if turn is None:
                real = (os.getpid(), os.path.realpath(path))
                turn = _TURNS_BY_FILE.get(real)
                if turn is None:
                    turn = _TURNS_BY_FILE[real] = _Turn(path)
                _WRITER_LOCKS[key] = turn
    return turn


@contextmanager
def sqlite_writer(engine: Engine) -> Iterator[None]:
    """Take turns with this host's other writers of ``engine``'s SQLite file; no-op otherwise.

    SQLite's busy handler polls a held write lock with sleeps of 1, 2, 5, 10, 15,
    20 ms …, so of two pool processes taking turns the waiting one sleeps far
    longer than the other's transaction lasts, and often misses its turn again
    (strace of a draining worker: 1.6 such sleeps per job, runs of 1 to 20 ms).
    An ``flock`` on a file beside the database blocks in the kernel and wakes a
    waiter as soon as the holder lets go, or dies: the kernel drops the lock with
    the process's descriptors.  Hand-written because ``filelock`` polls with
    sleeps too, and on a file of its own because closing any descriptor of the
    database file would drop SQLite's own POSIX locks in this process.

    Every write transaction on an engine of :func:`get_engine` takes the same
    turn by itself, from its first write to the end of its ``COMMIT`` or
    ``ROLLBACK`` (:class:`_WriterConnection`): the API's request threads, the
    gRPC server's, the worker, beat's maintenance.  This block holds it across
    more than one transaction.  The thread holding the turn may nest blocks and
    transactions in it without waiting on itself; a second connection of that
    thread that writes then meets SQLite's own lock, as before turns.  A turn
    lasts as long as SQLite's write lock would, so a writer stuck inside its
    transaction stalls the same writers; they wait for it instead of failing
    after ``busy_timeout``.
    """
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    turn = _turn(path)
    turn.take()
    try:
        yield
    finally:
        turn.give_back()


def hold_writer_turn(dbapi_connection: Any, engine: Engine) -> None:
    """Make a DBAPI connection of ``engine`` hold the writer turn until its transaction ends.

    For statements sent on the DBAPI connection itself (``app.prepared``), which
    SQLAlchemy's execution events do not see; a no-op but for SQLite files.
    """
    if isinstance(dbapi_connection, _WriterConnection):
        dbapi_connection.take_turn(str(engine.url.database))


def _close_inherited_writer_locks() -> None:
    # A forked child's copy of its parent's descriptor would keep the parent's
    # lock alive after the parent died; the child opens its own on first use.
    pid = os.getpid()
    for key in [key for key in _WRITER_LOCKS if key[0] != pid]:
        del _WRITER_LOCKS[key]
    for key in [key for key in _TURNS_BY_FILE if key[0] != pid]:
        os.close(_TURNS_BY_FILE.pop(key).descriptor)


os.register_at_fork(after_in_child=_close_inherited_writer_locks)


class _WriterConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions take the host's writer turn.

    Why here and not in SQLAlchemy's events alone: the turn must end after the
    SQL ``COMMIT`` or ``ROLLBACK`` has completed and before any post-commit work
    (``outbox``'s ``after_commit`` listener publishes to Redis).  The engine's
    ``commit`` and ``rollback`` events fire *before* the DBAPI call; the
    session's ``after_commit`` fires after it but misses Core transactions
    (``engine.begin()``) and rollbacks; the pool's ``reset`` and ``checkin``
    come after ``after_commit`` (``SessionTransaction.commit`` dispatches it
    before it closes its connections).  SQLAlchemy ends every transaction of a
    pysqlite connection with ``dbapi_connection.commit()`` or ``.rollback()``
    (``DefaultDialect.do_commit``/``do_rollback``: a session's commit or
    rollback, a ``Connection``'s, the pool's reset on return and the rollback
    of a connection collected unreturned) or drops it with ``.close()``
    (``do_close``: invalidation after a disconnect, ``dispose``).  Giving the
    turn back after each of these, whether it raised or not, covers every path
    out of a transaction, failures included (a transaction that ends
    otherwise: :func:`_take_writer_turns`).

    A turn given back while SQLite's lock is still held (a failed ``COMMIT``
    the caller then rolls back) only lets the next writer meet SQLite's busy
    handler, as every writer did before; a turn kept would stall the host.
    """

    turn: _Turn | None = None

    def take_turn(self, path: str) -> None:
        """Hold the writer turn of ``path`` until this connection's transaction ends."""
        if self.turn is None:
            turn = _turn(path)
            turn.take()
            self.turn = turn

    def give_back_turn(self) -> None:
        """Let the next writer go, if this connection holds the turn."""
        turn, self.turn = self.turn, None
        if turn is not None:
            turn.give_back()

    def commit(self) -> None:
        """Commit, then give the turn back."""
        try:
            super().commit()
        finally:
            self.give_back_turn()

    def rollback(self) -> None:
        """Roll back, then give the turn back."""
        try:
            super().rollback()
        finally:
            self.give_back_turn()

    def close(self) -> None:
        """Close (SQLite rolls back what is left), then give the turn back."""
        try:
            super().close()
        finally:
            self.give_back_turn()


# What sqlite3 opens its implicit transaction before (textual SQL has no DML flags).
_TEXTUAL_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _take_writer_turns(engine: Engine, path: str) -> None:
    """Make each write transaction on ``engine`` take the writer turn of ``path``.

    The turn is taken right before the first INSERT, UPDATE or DELETE (Core DML,
    ORM flushes and textual SQL alike) goes to SQLite, and not for reads: WAL
    lets them run beside the writer, and sqlite3 runs a SELECT outside any
    transaction until the first write opens one.  A turn whose transaction ended
    without ``commit()`` or ``rollback()`` (an autocommit write, a ``RELEASE`` of
    the outermost savepoint, a DML statement sqlite3 runs without its implicit
    ``BEGIN``) is given back before the connection's next statement, or when the
    pool takes the connection back.

    Only the dialect's ``do_execute*`` events: an engine's connection events
    (``before_cursor_execute``, ``after_cursor_execute``) put every statement on
    SQLAlchemy's slower path, 30-45 µs more per transaction measured in-process.
    They also run after every ``before_cursor_execute`` listener, so a listener
    there that waits for other threads (a test's barrier) waits outside the turn.
    """

    def before_statement(cursor: Any, statement: str, context: Any) -> None:
        connection = cursor.connection
        if connection.turn is not None and not connection.in_transaction:
            connection.give_back_turn()
        if context.is_crud or (context.is_text and _TEXTUAL_WRITE.match(statement)):
            connection.take_turn(path)

    @event.listens_for(engine, "do_execute")
    @event.listens_for(engine, "do_executemany")
    def before_statement_with_parameters(
        cursor: Any, statement: str, _params: Any, context: Any
    ) -> None:
        before_statement(cursor, statement, context)

    @event.listens_for(engine, "do_execute_no_params")
    def before_statement_without_parameters(cursor: Any, statement: str, context: Any) -> None:
        before_statement(cursor, statement, context)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Open a session, commit when the block succeeds, roll back when it raises."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rowcount(session: Session, statement: Executable) -> int:
    """Execute an UPDATE or DELETE and return how many rows it changed."""
    result = session.execute(statement, execution_options={"synchronize_session": False})
    assert isinstance(result, CursorResult)
    return result.rowcount


def is_unavailable(exc: BaseException) -> bool:
    """Tell whether a database error means the server is unreachable."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def service_error(exc: SQLAlchemyError) -> TaskForgeError | None:
    """The service-layer error a database error stands for; ``None`` when it is a bug.

    The one mapping both edges use: an outage is ``Unavailable``; a violated
    constraint is ``Conflict`` (two concurrent creates of one name both passed the
    services' check, and the database let only one win).
    """
    if is_unavailable(exc):
        return Unavailable(UNAVAILABLE_MESSAGE)
    if isinstance(exc, IntegrityError):
        return Conflict(_DUPLICATE_MESSAGES.get(_violated_table(exc) or "", _CONFLICT_MESSAGE))
    return None


def _violated_table(exc: IntegrityError) -> str | None:
    """The table whose unique constraint ``exc`` violated (PostgreSQL or SQLite)."""
    diag = getattr(exc.orig, "diag", None)
    if diag is not None:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return diag.table_name if sqlstate == "23505" else None
    match = _SQLITE_UNIQUE.search(str(exc.orig))
    return match.group(1) if match else None
