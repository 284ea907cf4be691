"""A fork waits for background threads' I/O sections, and the child starts with fresh SQL pools."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import text

from app.db import get_engine
from app.forksafe import FORK_GATE


def _fork(child: object) -> int:
    """Fork; the child exits with ``child()`` as its status; return that status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = int(child())  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_fork_waits_until_no_section_runs() -> None:
    inside = threading.Event()
    leave = threading.Event()
    codes: list[int] = []

    def background() -> None:
        with FORK_GATE.section():
            inside.set()
            leave.wait(30)
            inside.clear()

    thread = threading.Thread(target=background)
    thread.start()
    assert inside.wait(10)
    # The child reports whether the section was still running when it was forked.
    forker = threading.Thread(target=lambda: codes.append(_fork(inside.is_set)))
    forker.start()
    forker.join(0.5)  # without the gate the fork happens now, inside the section
    leave.set()
    forker.join(30)
    thread.join(30)
    assert codes == [0]


def test_a_child_gets_new_pools_and_leaves_the_parents_connections_alone(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/fork.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    parent_pool = engine.pool

    def child() -> int:
        if engine.pool is parent_pool:
            return 2
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        return 0

    assert _fork(child) == 0
    assert engine.pool is parent_pool
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (2)"))
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
