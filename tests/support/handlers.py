"""Job handlers that only tests use (workers load them via TASKFORGE_HANDLER_MODULES)."""

from __future__ import annotations

import os
import signal
import time
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


@job("test.greet")
def greet(payload: Any) -> dict[str, Any]:
    """Answer with a greeting: a job type only workers loading this module run."""
    return {"hello": payload}


@job("test.hold")
def hold(payload: Any) -> None:
    """Keep the worker busy for ``payload["seconds"]`` seconds."""
    time.sleep(float(payload["seconds"]))
