"""What every servicer mixin shares: the runtime, the session scope and the watch slots."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from app.runtime import Runtime


class ServicerBase:
    """Hold the collaborators the RPC methods need."""

    def __init__(
        self, runtime: Runtime, *, watch_slots: int = 8, watch_interval: float = 0.2
    ) -> None:
        self.runtime = runtime
        # Each watch holds a server thread; a bound keeps unary calls served.
        self.watch_slots = threading.BoundedSemaphore(watch_slots)
        self.watch_interval = watch_interval

    def session(self) -> AbstractContextManager[Session]:
        """One transaction: committed when the block succeeds, rolled back when it raises."""
        return self.runtime.session_scope()
