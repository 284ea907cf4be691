"""Connect to Redis as one server or through Redis Sentinel, from ``REDIS_URL``.

One URL form for every client, the one kombu reads (so Celery needs nothing else):

- ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``): one server.
- ``sentinel://[:password@]host:port/db;sentinel://…`` (one part per Sentinel) plus
  ``TASKFORGE_REDIS_SENTINEL_MASTER``, the name the Sentinels monitor: the client asks
  the Sentinels for the current master before it connects and again after a
  connection to it fails, so a failover is followed without a restart.  The password
  and database in the URL are the master's; the Sentinels themselves are reached
  without a password, as in deploy/compose.yaml.

redis-py's ``Sentinel`` and kombu's Sentinel transport do the discovery; this module
only turns the one URL into what each of them (and flask-limiter's ``limits``) expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel"


class RedisURLError(ValueError):
    """``REDIS_URL`` (with the Sentinel master name) does not describe a Redis."""


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through Sentinels: where they are, and what to ask them for."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str | None
    db: int


def is_sentinel_url(url: str) -> bool:
    """Tell whether ``url`` names Sentinels rather than one Redis server."""
    return url.strip().lower().startswith(f"{SENTINEL_SCHEME}://")


def parse_sentinel_url(url: str, master: str | None) -> SentinelTarget:
    """Read a ``sentinel://…;sentinel://…`` URL; raise RedisURLError when it is malformed."""
    if not master:
        raise RedisURLError(
            "REDIS_URL names Sentinels: set TASKFORGE_REDIS_SENTINEL_MASTER to the master's name"
        )
    nodes: list[tuple[str, int]] = []
    passwords: set[str] = set()
    databases: set[int] = set()
    for part in filter(None, (piece.strip() for piece in url.split(";"))):
        parts = urlsplit(part)
        try:
            port = parts.port or 26379
        except ValueError as exc:
            raise RedisURLError(f"REDIS_URL: {part!r} has an invalid port") from exc
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise RedisURLError(f"REDIS_URL: {part!r} is not sentinel://host:port/db")
        path = parts.path.strip("/") or "0"
        if not path.isdigit():
            raise RedisURLError(f"REDIS_URL: {part!r} names database {path!r}, not a number")
        nodes.append((parts.hostname, port))
        if parts.password:
            passwords.add(unquote(parts.password))
        databases.add(int(path))
    if len(passwords) > 1 or len(databases) > 1:
        raise RedisURLError("REDIS_URL: every sentinel:// part must name the same password and db")
    return SentinelTarget(
        sentinels=tuple(nodes),
        master=master,
        password=passwords.pop() if passwords else None,
        db=databases.pop() if databases else 0,
    )


def connect(
    url: str,
    *,
    sentinel_master: str | None = None,
    socket_timeout: float = 2.0,
    decode_responses: bool = False,
) -> redis.Redis:
    """A client of the Redis at ``url``: the server itself, or the master Sentinels name."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2,
        "decode_responses": decode_responses,
    }
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    target = parse_sentinel_url(url, sentinel_master)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={"socket_timeout": socket_timeout, "socket_connect_timeout": 2},
        password=target.password,
        db=target.db,
    )
    client: redis.Redis = sentinel.master_for(target.master, **options)
    return client


def limits_storage_uri(url: str, sentinel_master: str | None) -> str:
    """``url`` in the form flask-limiter's ``limits`` storage reads."""
    if not is_sentinel_url(url):
        return url
    target = parse_sentinel_url(url, sentinel_master)
    auth = f":{target.password}@" if target.password else ""
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    return f"redis+sentinel://{auth}{hosts}/{target.master}"


def limits_storage_options(url: str, socket_timeout: float = 2.0) -> dict[str, Any]:
    """The connection options ``limits`` needs for ``url`` besides the URI."""
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": 2}
    if not is_sentinel_url(url):
        return options
    return {
        **options,
        "db": parse_sentinel_url(url, "any").db,
        # limits would send the master's password to the Sentinels too; they have none.
        "sentinel_kwargs": {**options, "password": None},
        # Limits are counted on the master: a replica's count may be stale.
        "use_replicas": False,
    }


def celery_transport_options(url: str, sentinel_master: str | None) -> dict[str, Any]:
    """What kombu's Redis transport must be told besides ``url`` (the master's name)."""
    if not is_sentinel_url(url):
        return {}
    parse_sentinel_url(url, sentinel_master)  # fail here, not inside kombu's retry loop
    return {"master_name": sentinel_master}
