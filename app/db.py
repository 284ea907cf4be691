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
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=8, max_overflow=8)
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


# This process's writer lock of each SQLite file: (thread lock, descriptor), by pid and path.
_WRITER_LOCKS: dict[tuple[int, str], tuple[threading.Lock, int]] = {}


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
    database file would drop SQLite's own POSIX locks in this process.  Writers
    that do not take it (the API, maintenance) still meet SQLite's busy handler.
    """
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    key = (os.getpid(), path)
    entry = _WRITER_LOCKS.get(key)
    if entry is None:
        with _LOCK:
            entry = _WRITER_LOCKS.get(key)
            if entry is None:
                descriptor = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                entry = _WRITER_LOCKS[key] = (threading.Lock(), descriptor)
    # flock belongs to the open file, shared by this process's threads: they queue here first.
    thread_lock, descriptor = entry
    with thread_lock:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)


def _close_inherited_writer_locks() -> None:
    # A forked child's copy of its parent's descriptor would keep the parent's
    # lock alive after the parent died; the child opens its own on first use.
    for key in [key for key in _WRITER_LOCKS if key[0] != os.getpid()]:
        _, descriptor = _WRITER_LOCKS.pop(key)
        os.close(descriptor)


os.register_at_fork(after_in_child=_close_inherited_writer_locks)


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
