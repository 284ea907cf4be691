"""Stream tickets: how a client that cannot send headers (EventSource) opens an event stream.

A caller authenticated by header asks for a ticket, then opens the stream with
``?ticket=``.  A ticket opens one stream, within ``TICKET_SECONDS``, for the user or
API key that asked for it and in its organization; that credential is checked again,
as of then, when the ticket is redeemed (a logout, a removal or a demotion in between
counts).  A token in a URL would reach access logs, proxies and browser history; a
ticket that reaches them is spent already or dead within seconds.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from sqlalchemy.orm import Session

from app.errors import Unauthenticated, Unavailable
from app.redis_client import connect
from app.services.actors import Actor, Permission
from app.services.auth import TOKEN_GENERATION_CLAIM, actor_for_api_key_id, actor_for_token
from app.services.tokens import TokenStore

TICKET_SECONDS = 30
_TICKET_PREFIX = "taskforge:stream-ticket:"
_UNAVAILABLE = "The token store is unavailable; try again shortly"


class StreamTickets:
    """Single-use tickets in Redis, each naming who may open one event stream, briefly.

    Only a hash of each ticket is kept, so reading Redis yields no usable ticket.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str, *, sentinel_master: str | None = None) -> StreamTickets:
        """Connect to the Redis at ``url`` with short timeouts."""
        return cls(connect(url, sentinel_master=sentinel_master))

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


def mint_stream_ticket(
    store: StreamTickets, *, actor: Actor, token_claims: Mapping[str, Any] | None
) -> str:
    """Issue a ticket for one event stream of ``actor``, authenticated by key or token."""
    actor.require(Permission.JOB_READ)
    holder: dict[str, Any] = {"org": str(actor.organization_id)}
    if actor.api_key_id is not None:
        holder["key"] = str(actor.api_key_id)
    elif token_claims is not None:
        holder["token"] = {
            name: token_claims.get(name)
            for name in ("sub", "jti", "family", "exp", TOKEN_GENERATION_CLAIM)
        }
    else:
        raise Unauthenticated("A stream ticket is issued to an access token or an API key")
    return store.issue(holder, TICKET_SECONDS)


def redeem_stream_ticket(
    session: Session, store: StreamTickets, *, revocations: TokenStore, ticket: str
) -> Actor:
    """Spend ``ticket`` and return the actor it was issued to, as that actor is now."""
    holder = store.redeem(ticket) if ticket else None
    if holder is None:
        raise Unauthenticated("The stream ticket is unknown, used or expired; ask for a new one")
    if "key" in holder:
        actor = actor_for_api_key_id(session, uuid.UUID(holder["key"]))
    else:
        claims = holder["token"]
        if claims["exp"] <= time.time():
            raise Unauthenticated("The token the ticket was issued to has expired")
        if revocations.is_revoked(claims["jti"], claims["family"]):
            raise Unauthenticated("The token the ticket was issued to has been revoked")
        actor = actor_for_token(session, claims)
    if str(actor.organization_id) != holder["org"]:
        raise Unauthenticated("The stream ticket belongs to another organization")
    return actor
