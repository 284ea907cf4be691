"""Read-only look at the broker: how many messages wait on a Celery queue, and which first."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import redis

from app.celery_names import parse_task_id, priority_step
from app.redis_client import connect

# kombu's Redis transport keeps priority step N of queue Q in the list
# "Q<sep>N" (step 0 in "Q" itself), with kombu's default separator and
# celeryconfig's ten steps.  Spelt out here: app/ imports no kombu.  It pushes on
# the left and pops on the right, so the right end holds the oldest message.
PRIORITY_STEPS = range(10)
PRIORITY_SEPARATOR = "\x06\x16"


def step_list(celery_queue: str, step: int) -> str:
    """The Redis list that holds priority step ``step`` of ``celery_queue``."""
    return celery_queue if step == 0 else f"{celery_queue}{PRIORITY_SEPARATOR}{step}"


@dataclass(frozen=True)
class Head:
    """The next message a worker would take at one priority of a queue."""

    job_id: uuid.UUID | None  # None: no message waits at that priority


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
        try:
            pipe = self._redis.pipeline(transaction=False)
            for step in PRIORITY_STEPS:
                pipe.llen(step_list(celery_queue, step))
            return int(sum(pipe.execute()))
        except redis.RedisError:
            return None

    def head(self, celery_queue: str, priority: int) -> Head | None:
        """The oldest message waiting at TaskForge ``priority``; None when that is unknown.

        Unknown: the broker does not answer, or the message is not a job's.
        """
        try:
            raw = self._redis.lindex(step_list(celery_queue, priority_step(priority)), -1)
        except redis.RedisError:
            return None
        if raw is None:
            return Head(None)
        try:
            message = json.loads(raw)
            parsed = parse_task_id(message["headers"]["id"])
        except (ValueError, KeyError, TypeError):
            return None
        return Head(parsed[0]) if parsed else None

    def ping(self) -> bool:
        """Tell whether the broker answers."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False
