"""Remote control of one Celery worker, addressed by nodename: pool size and draining.

The sending side; a worker answers in ``tasks.worker_commands`` (drain) and in
Celery itself (pool commands).
"""

from __future__ import annotations

from typing import Any

from app.celery_names import DRAIN_COMMAND
from tasks.celery_app import app

POOL_COMMANDS = {"grow": "pool_grow", "shrink": "pool_shrink", "restart": "pool_restart"}
REPLY_TIMEOUT = 1.0


class CeleryWorkerControl:
    """Send control commands to a single worker (``destination=[hostname]``)."""

    def pool(self, hostname: str, action: str, n: int) -> dict[str, Any] | None:
        """Grow, shrink or restart ``hostname``'s pool; return its reply, None if silent."""
        arguments = {} if action == "restart" else {"n": n}
        replies = app.control.broadcast(
            POOL_COMMANDS[action],
            arguments=arguments,
            destination=[hostname],
            reply=True,
            timeout=REPLY_TIMEOUT,
            limit=1,
        )
        for reply in replies or []:
            if hostname in reply:
                answer: dict[str, Any] = reply[hostname]
                return answer
        return None

    def drain(self, hostname: str) -> None:
        """Tell ``hostname`` to cancel all its consumers and finish what it runs."""
        app.control.broadcast(DRAIN_COMMAND, destination=[hostname], reply=False)
