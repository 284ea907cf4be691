"""Record the commands clients send to Redis, with MONITOR, between two markers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import redis


def commands_sent(redis_url: str, action: Callable[[], Any]) -> list[str]:
    """Run ``action`` and return the commands clients sent Redis meanwhile.

    Commands a Lua script runs are left out: the script's EVALSHA is the round trip.
    ``ECHO`` markers before and after bound the window, so nothing is timed.
    """
    start, end = f"start-{uuid.uuid4().hex}", f"end-{uuid.uuid4().hex}"
    with redis.Redis.from_url(redis_url) as client, client.monitor() as monitor:
        client.echo(start)
        for entry in monitor.listen():
            if start in entry["command"]:
                break
        action()
        client.echo(end)
        sent: list[str] = []
        for entry in monitor.listen():
            if end in entry["command"]:
                return sent
            if entry.get("client_type") != "lua":
                sent.append(entry["command"].split(" ", 1)[0].upper())
    raise AssertionError("the monitor stopped before the end marker")
