"""Force the interleaving of a check-then-insert race with real concurrent requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import event

from app.db import get_engine

MEET_TIMEOUT = 10.0


@contextmanager
def inserts_meet(database_url: str, table: str, parties: int = 2) -> Iterator[threading.Barrier]:
    """Hold each ``INSERT INTO table`` until ``parties`` of them are ready, then let all go.

    Every request has then passed the services' uniqueness check before any
    insert, so the database's constraint decides the race.  A party that never
    comes breaks the barrier after ``MEET_TIMEOUT`` seconds and the rest go on.
    """
    barrier = threading.Barrier(parties, timeout=MEET_TIMEOUT)
    prefix = f"INSERT INTO {table} "

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(prefix):
            with suppress(threading.BrokenBarrierError):
                barrier.wait()

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", hold)
    try:
        yield barrier
    finally:
        event.remove(engine, "before_cursor_execute", hold)


def run_together(*calls: Any) -> list[Any]:
    """Run each callable in its own thread at once; return their results in order."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results
