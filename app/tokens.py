"""Revoked-token blocklist in Redis, shared by every API process and the gRPC server.

A revoked token's ``jti`` is stored with a TTL equal to the token's remaining
life, so the set never grows beyond the tokens that could still be presented.
"""

from __future__ import annotations

import time

import redis

from app.errors import Unavailable

_PREFIX = "taskforge:revoked:"


class TokenStore:
    """Remember revoked JWT ids until they would have expired anyway."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> TokenStore:
        """Connect to the Redis at ``url`` with short timeouts."""
        return cls(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def revoke(self, jti: str, expires_at: float) -> None:
        """Revoke ``jti`` until ``expires_at`` (a Unix time)."""
        ttl = max(1, int(expires_at - time.time()) + 1)
        try:
            self._redis.set(_PREFIX + jti, b"1", ex=ttl)
        except redis.RedisError as exc:
            raise Unavailable("The token store is unavailable; try again shortly") from exc

    def is_revoked(self, jti: str) -> bool:
        """Tell whether ``jti`` was revoked; fail closed when Redis is down."""
        try:
            return bool(self._redis.exists(_PREFIX + jti))
        except redis.RedisError as exc:
            raise Unavailable("The token store is unavailable; try again shortly") from exc
