"""Tokens: issue, verify, rotate with reuse detection, log out; the blocklist behind them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
import pytest
from sqlalchemy.orm import Session

from app.errors import Unauthenticated
from app.redis_server import RedisProcess
from app.services.auth import Registration
from app.services.tokens import (
    ACCESS,
    REFRESH,
    TokenService,
    TokenStore,
    bearer_token,
)
from tests.support.workers import wait_for

SECRET = "a-test-secret-that-is-at-least-32-bytes"


@pytest.fixture
def tokens(redis_server: RedisProcess) -> TokenService:
    """A token service on the test Redis."""
    store = TokenStore.from_url(redis_server.url)
    return TokenService(
        secret=SECRET,
        store=store,
        access_lifetime=timedelta(minutes=15),
        refresh_lifetime=timedelta(days=14),
    )


def test_issued_tokens_carry_the_claims_of_a_login(tokens: TokenService, org: Registration) -> None:
    issued = tokens.issue(org.user)
    access = tokens.verify(issued.access_token)
    refresh = tokens.decode(issued.refresh_token, expected=REFRESH)
    assert access["sub"] == refresh["sub"] == str(org.user.id)
    assert (access["type"], refresh["type"]) == (ACCESS, REFRESH)
    assert access["family"] == refresh["family"]
    assert access["org_id"] == str(org.organization.id)
    assert access["gen"] == 0
    assert {"jti", "iat", "nbf", "exp"} <= access.keys()
    assert issued.expires_in == 15 * 60


def test_a_token_of_the_wrong_type_or_key_or_age_is_refused(
    tokens: TokenService, org: Registration
) -> None:
    issued = tokens.issue(org.user)
    with pytest.raises(Unauthenticated, match="Not an access token"):
        tokens.verify(issued.refresh_token)
    with pytest.raises(Unauthenticated, match="Not a refresh token"):
        tokens.decode(issued.access_token, expected=REFRESH)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-that-is-32-bytes-long!", "HS256")
    with pytest.raises(Unauthenticated, match="Invalid token"):
        tokens.verify(forged)
    expired = tokens.encode(str(org.user.id), token_type=ACCESS, expires_in=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(expired)


@pytest.mark.parametrize("claim", ["jti", "type", "sub", "exp", "iat"])
def test_a_token_missing_a_required_claim_is_refused(
    tokens: TokenService, org: Registration, claim: str
) -> None:
    claims = jwt.decode(tokens.issue(org.user).access_token, options={"verify_signature": False})
    del claims[claim]
    with pytest.raises(Unauthenticated, match=claim):
        tokens.verify(jwt.encode(claims, SECRET, "HS256"))


def test_rotation_keeps_the_family_and_reuse_revokes_it(
    tokens: TokenService, org: Registration, session: Session
) -> None:
    first = tokens.issue(org.user)
    rotated = tokens.refresh(session, first.refresh_token)
    assert (
        tokens.verify(rotated.access_token)["family"] == tokens.verify(first.access_token)["family"]
    )
    with pytest.raises(Unauthenticated, match="already used"):
        tokens.refresh(session, first.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.verify(rotated.access_token)


def test_logout_revokes_the_session_and_a_refresh_token_of_the_same_user(
    tokens: TokenService, org: Registration, session: Session
) -> None:
    issued = tokens.issue(org.user)
    claims = tokens.verify(issued.access_token)
    tokens.logout(claims, issued.refresh_token)
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.verify(issued.access_token)
    with pytest.raises(Unauthenticated):
        tokens.refresh(session, issued.refresh_token)


def test_authenticate_resolves_the_user_as_now(
    tokens: TokenService, org: Registration, session: Session
) -> None:
    authenticated = tokens.authenticate(session, tokens.issue(org.user).access_token)
    assert authenticated.actor.user_id == org.user.id
    assert authenticated.claims is not None and authenticated.claims["sub"] == str(org.user.id)


def test_the_blocklist_consumes_a_jti_once(tokens: TokenService) -> None:
    jti = uuid.uuid4().hex
    assert tokens.store.consume(jti, 2**31) is True
    assert tokens.store.consume(jti, 2**31) is False
    assert tokens.store.is_revoked(jti)


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer   ", "token"])
def test_only_a_bearer_authorization_carries_a_token(value: str) -> None:
    with pytest.raises(Unauthenticated, match="Bearer"):
        bearer_token(value)
    assert bearer_token("bearer abc ") == "abc"


def test_a_token_verified_before_still_expires_and_keeps_its_type(
    tokens: TokenService, org: Registration
) -> None:
    token = tokens.encode(str(org.user.id), token_type=ACCESS, expires_in=timedelta(seconds=1))
    assert tokens.decode(token, expected=ACCESS)["sub"] == str(org.user.id)
    with pytest.raises(Unauthenticated, match="Not a refresh token"):
        tokens.decode(token, expected=REFRESH)

    def refused() -> bool:
        try:
            tokens.decode(token, expected=ACCESS)
        except Unauthenticated as exc:
            return "expired" in exc.message
        return False

    wait_for(refused, timeout=30, message="a verified token outlived its expiry")
