"""Revoked-token blocklist and stream tickets in Redis, shared by every API and gRPC process.

A revoked token's ``jti`` is stored with a TTL equal to the token's remaining
life, so the set never grows beyond the tokens that could still be presented.

Every token issued at one login shares a ``family`` claim, kept when a refresh
token is rotated.  Presenting an already-rotated refresh token means it leaked:
the whole family is revoked (OAuth 2.0 Security BCP, RFC 9700 §4.14.2) for as
long as any of its tokens can live, the refresh lifetime.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import redis

from app.errors import Unavailable

_PREFIX = "taskforge:revoked:"
_FAMILY_PREFIX = "taskforge:family-revoked:"
_UNAVAILABLE = "The token store is unavailable; try again shortly"


def _ttl(expires_at: float) -> int:
    return max(1, int(expires_at - time.time()) + 1)


class TokenStore:
    """Remember revoked JWT ids and token families until they would have expired anyway."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> TokenStore:
        """Connect to the Redis at ``url`` with short timeouts."""
        return cls(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()

    def revoke(self, jti: str, expires_at: float) -> None:
        """Revoke ``jti`` until ``expires_at`` (a Unix time)."""
        try:
            self._redis.set(_PREFIX + jti, b"1", ex=_ttl(expires_at))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc

    def consume(self, jti: str, expires_at: float) -> bool:
        """Revoke ``jti`` atomically; tell whether this call was the one that revoked it."""
        try:
            return bool(self._redis.set(_PREFIX + jti, b"1", ex=_ttl(expires_at), nx=True))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc

    def revoke_family(self, family: str, lifetime_seconds: int) -> None:
        """Revoke every token carrying ``family`` for ``lifetime_seconds``."""
        try:
            self._redis.set(_FAMILY_PREFIX + family, b"1", ex=max(1, lifetime_seconds))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc

    def is_revoked(self, jti: str, family: str | None = None) -> bool:
        """Tell whether ``jti`` or its ``family`` was revoked; fail closed when Redis is down."""
        keys = [_PREFIX + jti]
        if family:
            keys.append(_FAMILY_PREFIX + family)
        try:
            return bool(self._redis.exists(*keys))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc


_TICKET_PREFIX = "taskforge:stream-ticket:"


class StreamTickets:
    """Single-use tickets in Redis, each naming who may open one event stream, briefly.

    Only a hash of each ticket is kept, so reading Redis yields no usable ticket.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> StreamTickets:
        """Connect to the Redis at ``url`` with short timeouts."""
        return cls(redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()

    def issue(self, holder: dict[str, Any], ttl_seconds: int) -> str:
        """Store ``holder`` under a new ticket for ``ttl_seconds``; return the ticket."""
        ticket = secrets.token_urlsafe(32)
        try:
            self._redis.set(_ticket_key(ticket), json.dumps(holder), ex=ttl_seconds)
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc
        return ticket

    def redeem(self, ticket: str) -> dict[str, Any] | None:
        """Return the ticket's holder and delete it, atomically; None when unknown or used."""
        try:
            raw = self._redis.getdel(_ticket_key(ticket))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc
        if raw is None:
            return None
        holder: dict[str, Any] = json.loads(raw)
        return holder


def _ticket_key(ticket: str) -> str:
    return _TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()
