"""Read-only look at the broker: how many messages wait on a Celery queue."""

from __future__ import annotations

import redis

# kombu's Redis transport keeps priority step N of queue Q in the list
# "Q<sep>N" (step 0 in "Q" itself), with kombu's default separator and
# celeryconfig's ten steps.  Spelt out here: app/ imports no kombu.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = range(10)


class BrokerProbe:
    """Count waiting messages per Celery queue on Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> BrokerProbe:
        """Connect to the broker at ``url`` with short timeouts."""
        return cls(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def depth(self, celery_queue: str) -> int | None:
        """Messages waiting on ``celery_queue``; None when the broker does not answer."""
        names = [
            celery_queue if step == 0 else f"{celery_queue}{PRIORITY_SEP}{step}"
            for step in PRIORITY_STEPS
        ]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
            return int(sum(pipe.execute()))
        except redis.RedisError:
            return None

    def ping(self) -> bool:
        """Tell whether the broker answers."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False
