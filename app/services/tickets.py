"""Stream tickets: how a client that cannot send headers (EventSource) opens an event stream.

A caller authenticated by header asks for a ticket, then opens the stream with
``?ticket=``.  A ticket opens one stream, within ``TICKET_SECONDS``, for the user or
API key that asked for it and in its organization; that credential is checked again,
as of then, when the ticket is redeemed (a logout, a removal or a demotion in between
counts).  A token in a URL would reach access logs, proxies and browser history; a
ticket that reaches them is spent already or dead within seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.errors import Unauthenticated
from app.services.actors import Actor, Permission
from app.services.auth import TOKEN_GENERATION_CLAIM, actor_for_api_key_id, actor_for_token

TICKET_SECONDS = 30


class TicketStore(Protocol):
    """Where tickets live (``app.tokens.StreamTickets``)."""

    def issue(self, holder: dict[str, Any], ttl_seconds: int) -> str: ...

    def redeem(self, ticket: str) -> dict[str, Any] | None: ...


class RevocationList(Protocol):
    """Which tokens are revoked (``app.tokens.TokenStore``)."""

    def is_revoked(self, jti: str, family: str | None = None) -> bool: ...


def mint_stream_ticket(
    store: TicketStore, *, actor: Actor, token_claims: Mapping[str, Any] | None
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
    session: Session, store: TicketStore, *, revocations: RevocationList, ticket: str
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
