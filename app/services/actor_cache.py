"""Remember who a credential stands for, per process, until any actor changes anywhere.

Resolving a credential to its ``Actor`` is one SQL query per request
(``app.services.auth``).  This cache saves it without letting a change wait: every
change that can alter or end an actor (a password change, a role change, a removed
member, a revoked API key, new organization settings) calls :func:`actors_changed`,
which replaces one value in Redis, the *actor epoch*, before the change commits
(a Redis outage refuses the change) and again after it (closing the window in which
a request could read the new epoch with the old row).  Every request reads the epoch
in the round trip it already makes (the token blocklist ``MGET``; one ``GET`` for an
API key) and uses an entry only when it was cached under that same epoch: the very
next request after a change reloads from SQL, in every process.

The epoch is a random value, never a counter, so a Redis that lost its data cannot
bring back an epoch old entries were cached under; with no epoch in Redis nothing
is cached until one is set.  Entries also expire after ``LAST_USED_RESOLUTION``, so an
API key's ``last_used_at`` keeps its resolution and a bump lost to a Redis failure
between commit and bump ends within that time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.orm import Session

from app.errors import Unauthenticated, Unavailable
from app.models import utcnow
from app.services.actor_epoch import EPOCH_KEY, UNAVAILABLE
from app.services.actors import Actor, Epoch
from app.services.auth import (
    LAST_USED_RESOLUTION,
    TOKEN_GENERATION_CLAIM,
    resolve_api_key,
    split_api_key,
)

logger = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
TTL_SECONDS = LAST_USED_RESOLUTION.total_seconds()


@dataclass(frozen=True)
class Cached:
    """An actor and the epoch it was read under."""

    actor: Actor
    epoch: bytes | str
    stale_at: float  # time.monotonic()
    expires_at: datetime | None  # an API key's own expiry


Load = Callable[[], tuple[Actor, datetime | None]]


def token_key(claims: Mapping[str, Any]) -> Hashable:
    """The cache key of a verified access token: its user and token generation."""
    # repr: a claim's type is part of what it says (1 and "1" are different generations).
    return ("user", repr(claims["sub"]), repr(claims.get(TOKEN_GENERATION_CLAIM, 0)))


def api_key_key(raw_key: str) -> Hashable:
    """The cache key of a presented API key; raise ``Unauthenticated`` when malformed."""
    parts = split_api_key(raw_key)
    if parts is None:
        raise Unauthenticated("Malformed API key")
    prefix, secret = parts
    # The secret's digest is part of the key: a hit proves the same secret was verified.
    return ("key", prefix, hashlib.sha256(secret.encode()).digest())


class ActorCache:
    """Actors by credential, each valid under the epoch it was loaded in.

    Hand-written rather than ``cachetools``: an entry's validity is the epoch it was
    read under, which no generic TTL/LRU cache checks, and the rest is one dict.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._entries: dict[Hashable, Cached] = {}
        self._lock = threading.Lock()

    def epoch(self) -> Epoch:
        """The current actor epoch (one ``GET``); raise ``Unavailable`` when Redis is down."""
        try:
            value: Epoch = self._redis.get(EPOCH_KEY)
        except redis.RedisError as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return value

    def peek(self, key: Hashable) -> Cached | None:
        """The entry for ``key`` unless it is too old or its key expired; its epoch unchecked."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() >= entry.stale_at:
            return None
        if entry.expires_at is not None and utcnow() >= entry.expires_at:
            return None
        return entry

    def resolve(self, key: Hashable, epoch: Epoch, load: Load) -> Actor:
        """The actor cached for ``key`` under ``epoch``, else ``load()``'s, cached.

        ``epoch`` must be read before ``load`` runs: a change committed after the read
        replaces the epoch, so what was loaded is never used under the new one.
        """
        if epoch is None:
            # Nothing may be cached without an epoch; start one for the next requests.
            self._start_epoch()
            return load()[0]
        entry = self.peek(key)
        if entry is not None and entry.epoch == epoch:
            return entry.actor
        loaded, expires_at = load()
        actor = replace(loaded, epoch=epoch)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            stale_at = time.monotonic() + TTL_SECONDS
            self._entries[key] = Cached(actor, epoch, stale_at, expires_at)
        return actor

    def for_api_key(self, session: Session, raw_key: str) -> Actor:
        """Resolve a presented API key (``auth.actor_for_api_key``), from the cache when valid."""
        key = api_key_key(raw_key)
        try:
            epoch = self.epoch()
        except Unavailable:
            # No cache is trusted without Redis; an API key verifies in SQL alone, as
            # it always did (docs/guarantees.md, "Broker outages").
            return resolve_api_key(session, raw_key)[0]
        return self.resolve(key, epoch, lambda: resolve_api_key(session, raw_key))

    def close(self) -> None:
        """Forget every entry and close the connections to Redis."""
        with self._lock:
            self._entries.clear()
        self._redis.close()

    def _start_epoch(self) -> None:
        try:
            self._redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
        except redis.RedisError:
            logger.warning("cannot start the actor epoch; actors stay uncached")
