"""Probe the host's SQLite writer turn (``app.db.sqlite_writer``) from another thread."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from app.db import sqlite_writer


def taken_elsewhere(engine: Engine) -> threading.Event:
    """Take the writer turn in another thread; the returned event is set once it holds it.

    The thread gives the turn back at once.  While this thread's own transaction
    holds the turn, the event stays unset; it is set once the turn is free.
    """
    got = threading.Event()

    def take() -> None:
        with sqlite_writer(engine):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got
