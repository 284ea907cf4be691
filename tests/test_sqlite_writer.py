"""SQLite's settings per connection, and the writer turns its write transactions take."""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event, insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from app.db import (
    _create_engine,
    _WriterConnection,
    get_engine,
    session_scope,
    sqlite_writer,
)
from tests.support.writer_turns import taken_elsewhere

# Generous: how long a waiter may take to notice a released lock on a loaded machine.
WAIT_SECONDS = 30.0


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """An engine on a fresh SQLite file."""
    return get_engine(f"sqlite:///{tmp_path}/writer.db")


def _child(body: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child running ``body(write_end)``; return its pid and the pipe's read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            body(write_end)
        finally:
            os._exit(0)
    os.close(write_end)
    return pid, read_end


def _said(read_end: int, timeout: float) -> bytes:
    """What the child wrote within ``timeout`` seconds (b"" if nothing yet)."""
    ready, _, _ = select.select([read_end], [], [], timeout)
    return os.read(read_end, 64) if ready else b""


def _reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_a_connection_keeps_temporary_storage_in_memory(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA temp_store")).scalar() == 2  # MEMORY


def test_a_waiting_writer_gets_the_lock_when_the_holder_lets_go(engine: Engine) -> None:
    def wait_for_it(write_end: int) -> None:
        with sqlite_writer(engine):
            os.write(write_end, b"got")

    with sqlite_writer(engine):
        pid, read_end = _child(wait_for_it)
        try:
            assert _said(read_end, 0.5) == b""  # one writer at a time
        except BaseException:
            _reap(pid)
            raise
    try:
        assert _said(read_end, WAIT_SECONDS) == b"got"
    finally:
        _reap(pid)


def test_a_holder_that_dies_leaves_the_lock_free(engine: Engine) -> None:
    def hold_forever(write_end: int) -> None:
        with sqlite_writer(engine):
            os.write(write_end, b"holding")
            signal.pause()

    pid, read_end = _child(hold_forever)
    try:
        assert _said(read_end, WAIT_SECONDS) == b"holding"
        got = taken_elsewhere(engine)
        assert not got.wait(0.5)
        os.kill(pid, signal.SIGKILL)
        assert got.wait(WAIT_SECONDS)
    finally:
        _reap(pid)


def test_a_forked_child_does_not_keep_its_parents_lock(engine: Engine) -> None:
    # A process forks while it holds the lock (a pool process starting while a
    # thread of its parent writes) and then dies: the child must not keep it held.
    def fork_while_holding(write_end: int) -> None:
        with sqlite_writer(engine):
            grandchild = os.fork()
            if grandchild == 0:
                signal.pause()
                os._exit(0)
            os.write(write_end, str(grandchild).encode())
            # Dies holding it, without unlocking: only the kernel releases its lock.
            os._exit(0)

    with sqlite_writer(engine):
        pass  # this process's descriptor exists before the fork, as in a worker
    pid, read_end = _child(fork_while_holding)
    grandchild = int(_said(read_end, WAIT_SECONDS))
    try:
        os.waitpid(pid, 0)
        got = taken_elsewhere(engine)
        assert got.wait(WAIT_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_an_in_memory_database_needs_no_lock() -> None:
    engine = create_engine("sqlite://")
    with sqlite_writer(engine), sqlite_writer(engine):
        pass  # no file, no other process: nested use does not block


# --- every write transaction on an engine of app.db takes the turn ----------------------

_metadata = MetaData()
_items = Table(
    "items",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
)


class _Base(DeclarativeBase):
    metadata = _metadata


class _Item(_Base):
    __table__ = _items


@pytest.fixture
def tables(engine: Engine) -> Engine:
    """``engine`` with the ``items`` table."""
    _metadata.create_all(engine)
    return engine


def _runs_to_the_end(body: Callable[[], object]) -> bool:
    """Run ``body`` in a thread; tell whether it returned within the generous wait.

    A body that waits on its own thread's turn would hang the test instead of failing it.
    """
    done = threading.Event()

    def run() -> None:
        body()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(WAIT_SECONDS)


@contextlib.contextmanager
def _held_by_another_thread(engine: Engine) -> Iterator[None]:
    """Hold the writer turn in another thread while the block runs."""
    release = threading.Event()
    got = threading.Event()

    def hold() -> None:
        with sqlite_writer(engine):
            got.set()
            release.wait()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert got.wait(WAIT_SECONDS)
    try:
        yield
    finally:
        release.set()
        thread.join(WAIT_SECONDS)


def test_a_write_holds_the_turn_from_its_first_write_to_its_commit(tables: Engine) -> None:
    with Session(tables) as session:
        session.execute(_items.select()).all()
        assert taken_elsewhere(tables).wait(WAIT_SECONDS), "a read takes no turn"
        session.add(_Item(name="a"))
        session.flush()
        waiting = taken_elsewhere(tables)
        assert not waiting.wait(0.5), "the flush's INSERT took the turn"
        session.execute(_items.select()).all()
        session.commit()
        assert waiting.wait(WAIT_SECONDS), "the commit gave it back"


def test_core_dml_through_a_session_takes_the_turn(tables: Engine) -> None:
    with Session(tables) as session:
        session.execute(insert(_items).values(name="a"))
        waiting = taken_elsewhere(tables)
        assert not waiting.wait(0.5)
        session.rollback()
        assert waiting.wait(WAIT_SECONDS)


def test_reads_run_while_another_writer_holds_the_turn(tables: Engine) -> None:
    def read() -> None:
        with Session(tables) as session:
            session.execute(_items.select()).all()
        with tables.connect() as connection:
            connection.execute(text("SELECT count(*) FROM items")).scalar()

    with _held_by_another_thread(tables):
        assert _runs_to_the_end(read)


# A fresh interpreter, not a fork: SQLite forbids carrying its state across fork(),
# and a child forked during a write transaction finds the file locked for good.
_WRITE_IN_ANOTHER_PROCESS = """
import os
import sys
from sqlalchemy import text
from app.db import get_engine
with get_engine(sys.argv[1]).begin() as connection:
    os.write(1, b"writing")
    connection.execute(text("INSERT INTO items (name) VALUES ('child')"))
os.write(1, b"done")
"""


def test_a_write_waits_for_a_writer_in_another_process(tables: Engine) -> None:
    url = tables.url.render_as_string()
    with Session(tables) as session:
        session.add(_Item(name="parent"))
        session.flush()
        argv = [sys.executable, "-c", _WRITE_IN_ANOTHER_PROCESS, url]
        with subprocess.Popen(argv, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            said = child.stdout.fileno()
            try:
                assert _said(said, WAIT_SECONDS) == b"writing"
                assert _said(said, 0.5) == b"", "the child waits for the parent's commit"
                session.commit()
                assert _said(said, WAIT_SECONDS) == b"done"
                assert child.wait(WAIT_SECONDS) == 0
            finally:
                child.kill()


def test_the_turn_is_given_back_before_the_sessions_post_commit_work(tables: Engine) -> None:
    seen: list[bool] = []
    with Session(tables) as session:
        # The outbox publishes in a listener like this one (app.services.outbox).
        event.listen(
            session,
            "after_commit",
            lambda _session: seen.append(taken_elsewhere(tables).wait(WAIT_SECONDS)),
        )
        session.add(_Item(name="a"))
        session.commit()
    assert seen == [True]


def test_a_write_that_ends_its_own_transaction_gives_the_turn_back_by_the_next_statement(
    tables: Engine,
) -> None:
    with tables.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(insert(_items).values(name="a"))
        connection.execute(_items.select()).all()
        assert taken_elsewhere(tables).wait(WAIT_SECONDS), "given back while still checked out"


def _rolled_back(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(_Item(name="a"))
        session.flush()
        session.rollback()


def _closed_without_commit(engine: Engine) -> None:
    session = Session(engine)
    session.add(_Item(name="a"))
    session.flush()
    session.close()


def _dropped_without_close(engine: Engine) -> None:
    session = Session(engine)
    session.add(_Item(name="a"))
    session.flush()
    del session
    gc.collect()  # the pool rolls back a connection collected unreturned


def _integrity_error_in_flush(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(_Item(name="twin"))
        session.commit()
    with pytest.raises(IntegrityError), session_scope(engine.url.render_as_string()) as session:
        session.execute(_items.select()).all()
        session.add(_Item(name="other"))
        session.flush()
        session.add(_Item(name="twin"))
        session.flush()


def _error_inside_the_transaction(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), engine.begin() as connection:
        connection.execute(insert(_items).values(name="a"))
        _ = 1 / 0


def _connection_invalidated(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(_Item(name="a"))
        session.flush()
        session.connection().invalidate()
        session.rollback()


def _generator_torn_down(engine: Engine) -> None:
    def rows() -> Generator[int, None, None]:
        with session_scope(engine.url.render_as_string()) as session:
            session.add(_Item(name="a"))
            session.flush()
            yield 1
            yield 2

    stream = rows()
    assert next(stream) == 1
    stream.close()


@pytest.mark.parametrize(
    "end",
    [
        _rolled_back,
        _closed_without_commit,
        _dropped_without_close,
        _integrity_error_in_flush,
        _error_inside_the_transaction,
        _connection_invalidated,
        _generator_torn_down,
    ],
)
def test_every_way_out_of_a_write_gives_the_turn_back(
    tables: Engine, end: Callable[[Engine], None]
) -> None:
    end(tables)
    assert taken_elsewhere(tables).wait(WAIT_SECONDS), "the turn leaked"
    with Session(tables) as session:
        assert session.scalars(text("SELECT name FROM items")).all() in ([], ["twin"])


def test_the_thread_holding_the_turn_writes_inside_it(tables: Engine) -> None:
    def nested() -> None:
        with sqlite_writer(tables), sqlite_writer(tables), Session(tables) as session:
            session.add(_Item(name="a"))
            session.commit()

    assert _runs_to_the_end(nested)
    assert taken_elsewhere(tables).wait(WAIT_SECONDS)


def test_a_second_connection_of_the_writing_thread_meets_sqlites_lock_not_its_own_turn(
    tables: Engine,
) -> None:
    outcome: list[str] = []

    def two_sessions() -> None:
        with Session(tables) as first, Session(tables) as second:
            first.add(_Item(name="first"))
            first.flush()
            # As before turns: SQLite's busy handler answers the second writer, here quickly.
            second.execute(text("PRAGMA busy_timeout = 50"))
            second.add(_Item(name="second"))
            try:
                second.flush()
            except OperationalError as exc:
                outcome.append(str(exc.orig))
                second.rollback()
            first.commit()

    assert _runs_to_the_end(two_sessions)
    assert outcome == ["database is locked"]
    assert taken_elsewhere(tables).wait(WAIT_SECONDS)


def test_a_forked_child_leaving_its_parents_turn_does_not_end_it(engine: Engine) -> None:
    read_end, write_end = os.pipe()
    held = sqlite_writer(engine)
    held.__enter__()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                held.__exit__(None, None, None)
                os.write(write_end, b"left")
            finally:
                os._exit(0)
        os.close(write_end)
        assert _said(read_end, WAIT_SECONDS) == b"left"
        os.waitpid(pid, 0)
        waiting = taken_elsewhere(engine)
        assert not waiting.wait(0.5), "the parent still holds its turn"
    finally:
        held.__exit__(None, None, None)
    assert waiting.wait(WAIT_SECONDS)


@pytest.mark.parametrize("url", ["sqlite://", "postgresql+psycopg://taskforge@127.0.0.1:1/none"])
def test_postgresql_and_in_memory_engines_take_no_turns(url: str) -> None:
    engine = _create_engine(url)  # never connects to the server
    assert not engine.dialect.dispatch.do_execute
    assert "factory" not in engine.dialect.create_connect_args(engine.url)[1]


def test_a_file_engine_takes_turns(engine: Engine) -> None:
    with engine.connect() as connection:
        assert isinstance(connection.connection.dbapi_connection, _WriterConnection)


def test_two_spellings_of_one_file_share_one_turn(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(str(engine.url.database))
    # Relative to the parent of the test's own folder: no other test spells it so.
    monkeypatch.chdir(path.parent.parent)
    relative = get_engine(f"sqlite:///{path.parent.name}/{path.name}")

    def nested() -> None:
        with sqlite_writer(engine), sqlite_writer(relative):
            pass

    assert _runs_to_the_end(nested), "a second descriptor of the file waited on the first"
    assert taken_elsewhere(relative).wait(WAIT_SECONDS)
