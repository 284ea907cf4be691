"""gunicorn server hooks for the API (``--config python:app.gunicorn_hooks``).

In Prometheus multiprocess mode each worker writes its metrics to files under
``PROMETHEUS_MULTIPROC_DIR``; a worker that exits must be marked dead so its
live-gauge files stop counting.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    """Mark an exited gunicorn worker's metric files dead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
