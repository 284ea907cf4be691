"""Read-only look at the broker: how many messages wait on a Celery queue."""

from __future__ import annotations

import redis

from app.redis_client import connect

# kombu's Redis transport keeps priority step N of queue Q in the list "Q:N"
# (step 0 in "Q" itself) with celeryconfig's ``sep=":"`` and ten steps.
PRIORITY_STEPS = range(10)


class BrokerProbe:
    """Count waiting messages per Celery queue on Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str, *, sentinel_master: str | None = None) -> BrokerProbe:
        """Connect to the broker at ``url`` (or the master Sentinels name) with short timeouts."""
        return cls(connect(url, sentinel_master=sentinel_master))

    def depth(self, celery_queue: str) -> int | None:
        """Messages waiting on ``celery_queue``; None when the broker does not answer."""
        names = [celery_queue if step == 0 else f"{celery_queue}:{step}" for step in PRIORITY_STEPS]
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
