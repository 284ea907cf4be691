"""Stream tickets: issued to a credential, spent once, checked again when spent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.errors import Unauthenticated
from app.redis_server import RedisProcess
from app.services import apikeys, tickets
from app.services.actors import Actor
from app.services.auth import Registration, actor_for_api_key
from app.services.tickets import StreamTickets
from app.services.tokens import TokenService, TokenStore


@pytest.fixture
def stores(redis_server: RedisProcess) -> Iterator[tuple[StreamTickets, TokenService]]:
    """The ticket store and a token service on the test Redis."""
    ticket_store = StreamTickets.from_url(redis_server.url)
    token_store = TokenStore.from_url(redis_server.url)
    yield (
        ticket_store,
        TokenService(
            secret="a-test-secret-that-is-at-least-32-bytes",
            store=token_store,
            access_lifetime=timedelta(minutes=15),
            refresh_lifetime=timedelta(days=1),
        ),
    )
    ticket_store.close()
    token_store.close()


def test_a_ticket_opens_one_stream_for_the_token_it_was_issued_to(
    session: Session, org: Registration, stores: tuple[StreamTickets, TokenService]
) -> None:
    ticket_store, tokens = stores
    authenticated = tokens.authenticate(session, tokens.issue(org.user).access_token)
    ticket = tickets.mint_stream_ticket(
        ticket_store, actor=authenticated.actor, token_claims=authenticated.claims
    )
    redeemed = tickets.redeem_stream_ticket(
        session, ticket_store, revocations=tokens.store, ticket=ticket
    )
    assert redeemed.user_id == org.user.id
    with pytest.raises(Unauthenticated, match="unknown, used or expired"):
        tickets.redeem_stream_ticket(session, ticket_store, revocations=tokens.store, ticket=ticket)


def test_a_ticket_of_a_revoked_key_opens_nothing(
    session: Session, actor: Actor, stores: tuple[StreamTickets, TokenService]
) -> None:
    ticket_store, tokens = stores
    key = apikeys.create_api_key(session, actor=actor, name="k", scopes=["job:read"])
    ticket = tickets.mint_stream_ticket(
        ticket_store, actor=actor_for_api_key(session, key.key), token_claims=None
    )
    apikeys.revoke_api_key(session, actor=actor, api_key_id=key.api_key.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        tickets.redeem_stream_ticket(session, ticket_store, revocations=tokens.store, ticket=ticket)
