"""Celery beat's scheduler, plus a liveness file an orchestrator can check.

Beat answers no request and keeps no connection a probe could see, so its proof of
life is a file it touches after every tick: ``taskforge health beat`` reads its age.
A file, not a Redis key, so a Redis outage does not make beat look dead (a restart
would not help it) and the probe needs nothing but the local disk.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from celery.beat import PersistentScheduler

from app.config import VAR_DIR
from app.roles import BEAT_LIVENESS_FILE

# Touching the file at most this often is proof enough; a busy tick loop runs far faster.
TOUCH_EVERY_SECONDS = 1.0


class LivenessScheduler(PersistentScheduler):
    """Celery's file-backed scheduler that touches ``$TASKFORGE_VAR_DIR/beat.alive`` each tick."""

    liveness_file = VAR_DIR / BEAT_LIVENESS_FILE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._touched_at = 0.0
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run one tick, then prove it on the liveness file."""
        interval: float = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._touched_at >= TOUCH_EVERY_SECONDS:
            self.liveness_file.parent.mkdir(parents=True, exist_ok=True)
            self.liveness_file.touch()
            self._touched_at = now
        return interval

    def close(self) -> None:
        """Close the schedule and remove the liveness file: a stopped beat is not alive."""
        super().close()
        with contextlib.suppress(FileNotFoundError):
            self.liveness_file.unlink()
