"""Job handlers that only tests use (workers load them via TASKFORGE_HANDLER_MODULES)."""

from __future__ import annotations

import os
import signal
from typing import Any

from tasks.handlers import job


@job("test.crash")
def crash(_payload: Any) -> None:
    """Kill the process running the job, as an OOM kill or a segfault would."""
    os.kill(os.getpid(), signal.SIGKILL)


@job("test.not_json")
def not_json(_payload: Any) -> object:
    """Return something that cannot be stored as JSON."""
    return object()
