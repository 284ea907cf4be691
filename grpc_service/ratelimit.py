"""Request limits for gRPC calls, from the same settings as the REST edge's.

Like REST, a call counts against the API key or user its credentials verify
as, and a call whose credentials do not verify counts against the peer's
address, so inventing credentials never buys a fresh bucket.  Windows are fixed
and kept in Redis; a Redis outage lets calls through rather than taking the
server down with it.
"""

from __future__ import annotations

import logging
import time

from limits import parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.services.actors import Actor

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    """The caller used up a limit; it may call again after ``retry_after`` seconds."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded ({limit}); retry in {retry_after} s")
        self.retry_after = retry_after


def actor_key(actor: Actor) -> str:
    """The bucket of an authenticated caller: its API key, else its user."""
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return f"user:{actor.user_id}"


def address_key(peer: str) -> str:
    """The bucket of a caller without verified credentials: its address (``ipv4:h:p``)."""
    host = peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
    return "ip:" + host


class RateLimiter:
    """Check each call against the configured limits."""

    def __init__(self, redis_url: str, limits: str) -> None:
        storage = storage_from_string(
            redis_url,
            key_prefix="taskforge:ratelimit:grpc",
            wrap_exceptions=True,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        self._strategy = FixedWindowRateLimiter(storage)
        self._limits = parse_many(limits)

    def check(self, key: str) -> None:
        """Count one call against ``key``; raise ``RateLimited`` when a limit is used up."""
        for item in self._limits:
            try:
                if self._strategy.hit(item, key):
                    continue
                reset_at = self._strategy.get_window_stats(item, key).reset_time
            except StorageError:
                logger.warning("rate-limit storage unavailable; letting the call through")
                return
            raise RateLimited(str(item), max(1, round(reset_at - time.time())))
