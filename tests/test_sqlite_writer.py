"""SQLite's settings per connection, and the writer lock the worker's hot path takes turns on."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from app.db import get_engine, sqlite_writer

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


def _holds_lock_in_thread(engine: Engine) -> threading.Event:
    """Take the writer lock in a thread; the returned event is set once it holds it."""
    got = threading.Event()

    def take() -> None:
        with sqlite_writer(engine):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got


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
        got = _holds_lock_in_thread(engine)
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
        got = _holds_lock_in_thread(engine)
        assert got.wait(WAIT_SECONDS)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_an_in_memory_database_needs_no_lock() -> None:
    engine = create_engine("sqlite://")
    with sqlite_writer(engine), sqlite_writer(engine):
        pass  # no file, no other process: nested use does not block
