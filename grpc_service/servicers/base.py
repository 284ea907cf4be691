"""What every servicer mixin shares: settings, the session scope and the call's actor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope

BrokerDepth = Callable[[str], int | None]


class ServicerBase:
    """Hold the collaborators the RPC methods need."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker_depth: BrokerDepth | None = None,
        watch_slots: int = 8,
        watch_interval: float = 0.2,
    ) -> None:
        self.settings = settings
        self.broker_depth = broker_depth
        # Each watch holds a server thread; a bound keeps unary calls served.
        self.watch_slots = threading.BoundedSemaphore(watch_slots)
        self.watch_interval = watch_interval

    def session(self) -> AbstractContextManager[Session]:
        """One transaction: committed when the block succeeds, rolled back when it raises."""
        return session_scope(self.settings.database_url)
