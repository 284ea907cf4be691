"""Access and refresh tokens: issue, verify, rotate, revoke; the blocklist they are checked against.

Tokens are HS256 JWTs signed with ``JWT_SECRET_KEY`` (PyJWT; the algorithm is pinned
on both sides).  Each carries ``sub`` (the user id), ``type`` (``access`` or
``refresh``), a unique ``jti``, ``iat``/``nbf``/``exp``, the organization and role
it was issued with, a ``family`` shared by every token of one login and kept on
rotation, and the user's token generation ``gen``.  The claim set is the one
flask-jwt-extended wrote before this module did, so tokens of either stay valid
across an upgrade.

Both edges verify with :meth:`TokenService.verify`: signature, algorithm, expiry,
the required claims, the type, and the blocklist.  Who the token stands for *now*
(an active user whose password did not change since) is ``app.services.auth``'s.

The blocklist lives in Redis, shared by every API and gRPC process.  A revoked
token's ``jti`` is kept as long as the token could still be presented.
Presenting an already-rotated refresh token means it leaked: its whole family is
revoked (OAuth 2.0 Security BCP, RFC 9700 §4.14.2) for the refresh lifetime.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import redis
from sqlalchemy.orm import Session

from app.errors import Unauthenticated, Unavailable
from app.models import User
from app.redis_client import connect
from app.services.actor_cache import ActorCache, token_key
from app.services.actor_epoch import EPOCH_KEY
from app.services.actors import Actor, Epoch
from app.services.auth import actor_for_token, token_claims, user_for_token

ALGORITHM = "HS256"
DECODE_ALGORITHMS = (ALGORITHM,)
ACCESS, REFRESH = "access", "refresh"
TOKEN_TYPES = frozenset({ACCESS, REFRESH})
REQUIRED_CLAIMS = ("sub", "type", "jti", "iat", "exp")
BEARER = "bearer"

_PREFIX = "taskforge:revoked:"
_FAMILY_PREFIX = "taskforge:family-revoked:"
_UNAVAILABLE = "The token store is unavailable; try again shortly"
VERIFIED_MAX = 10_000
EXPIRED = "The token has expired; refresh it or log in again"
REVOKED = "The token has been revoked"


def _ttl(expires_at: float) -> int:
    return max(1, int(expires_at - time.time()) + 1)


class TokenStore:
    """Remember revoked JWT ids and token families until they would have expired anyway."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str, *, sentinel_master: str | None = None) -> TokenStore:
        """Connect to the Redis at ``url`` with short timeouts."""
        return cls(connect(url, sentinel_master=sentinel_master))

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
        try:
            return bool(self._redis.exists(*self.blocklist_keys(jti, family)))
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc

    @staticmethod
    def blocklist_keys(jti: str, family: str | None = None) -> list[str]:
        """The Redis keys whose existence means ``jti`` or its ``family`` is revoked."""
        keys = [_PREFIX + jti]
        if family:
            keys.append(_FAMILY_PREFIX + family)
        return keys

    def check(self, jti: str, family: str | None = None) -> Epoch:
        """Return the actor epoch; raise ``Unauthenticated`` if ``jti`` or ``family`` is revoked."""
        # One MGET: the blocklist and the epoch (app.services.actor_epoch) in one round trip.
        keys = [EPOCH_KEY, *self.blocklist_keys(jti, family)]
        try:
            values: list[Epoch] = self._redis.mget(keys)
        except redis.RedisError as exc:
            raise Unavailable(_UNAVAILABLE) from exc
        if any(value is not None for value in values[1:]):
            raise Unauthenticated(REVOKED)
        return values[0]


@dataclass(frozen=True)
class IssuedTokens:
    """What a login, a refresh or a password change answers with."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


@dataclass(frozen=True)
class Authenticated:
    """The actor a credential stands for, and the claims when it was an access token."""

    actor: Actor
    claims: dict[str, Any] | None = None


def new_token_family() -> str:
    """A fresh id for the tokens of one login; rotation keeps it, reuse revokes it."""
    return uuid.uuid4().hex


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise Unauthenticated("Send the token as 'Authorization: Bearer <token>'")
    return token.strip()


class TokenService:
    """Sign and verify TaskForge's tokens, and keep the blocklist they are checked against."""

    def __init__(
        self,
        *,
        secret: str,
        store: TokenStore,
        access_lifetime: timedelta,
        refresh_lifetime: timedelta,
        actors: ActorCache | None = None,
    ) -> None:
        self._secret = secret
        # Tokens whose signature and claims verified, by their text: PyJWT's decode is
        # 5% of a submit's CPU, and one token is presented many times.
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.store = store
        self.actors = actors
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime

    def encode(
        self,
        subject: str,
        *,
        token_type: str,
        claims: Mapping[str, Any] | None = None,
        expires_in: timedelta | None = None,
    ) -> str:
        """Sign a token of ``token_type`` for ``subject``; its lifetime defaults by type."""
        if expires_in is None:
            expires_in = self.access_lifetime if token_type == ACCESS else self.refresh_lifetime
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "fresh": False,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "type": token_type,
            "sub": subject,
            "nbf": now,
            "exp": now + expires_in,
            **(claims or {}),
        }
        return jwt.encode(body, self._secret, algorithm=ALGORITHM)

    def issue(self, user: User, *, family: str | None = None) -> IssuedTokens:
        """An access and a refresh token of ``user``, in ``family`` (a new one by default)."""
        claims = token_claims(user, family=family or new_token_family())
        subject = str(user.id)
        return IssuedTokens(
            access_token=self.encode(subject, token_type=ACCESS, claims=claims),
            refresh_token=self.encode(subject, token_type=REFRESH, claims=claims),
            expires_in=int(self.access_lifetime.total_seconds()),
        )

    def decode(self, token: str, *, expected: str) -> dict[str, Any]:
        """Verify signature, algorithm, lifetime, the required claims and the type."""
        claims = self._verified.get(token)
        # A token verified before stays valid but for its expiry: only time moves on.
        if claims is None or claims["exp"] <= time.time():
            claims = self._verify(token, expected)
            with self._lock:
                if len(self._verified) >= VERIFIED_MAX:
                    self._verified.clear()
                self._verified[token] = claims
        if claims["type"] != expected:
            raise Unauthenticated(
                f"Not an {expected} token" if expected == ACCESS else "Not a refresh token"
            )
        return dict(claims)

    def _verify(self, token: str, expected: str) -> dict[str, Any]:
        what = "token" if expected == ACCESS else "refresh token"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=list(DECODE_ALGORITHMS),
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(
                EXPIRED if expected == ACCESS else f"Invalid {what}: {exc}"
            ) from exc
        except (jwt.PyJWTError, UnicodeError) as exc:  # UnicodeError: e.g. a lone surrogate
            raise Unauthenticated(f"Invalid {what}: {exc}") from exc
        if claims["type"] not in TOKEN_TYPES:
            raise Unauthenticated(f'Invalid {what}: the "type" claim must be "access" or "refresh"')
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise Unauthenticated(f'Invalid {what}: the "jti" claim must be a non-empty string')
        return claims

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unrevoked access token."""
        claims = self.decode(token, expected=ACCESS)
        if self.store.is_revoked(claims["jti"], claims.get("family")):
            raise Unauthenticated(REVOKED)
        return claims

    def authenticate(self, session: Session, token: str) -> Authenticated:
        """The actor of an access token, as that user is now.

        The blocklist and the actor epoch are read in one round trip; with an actor
        cache, the user's row is read only when no actor is cached under that epoch.
        """
        claims = self.decode(token, expected=ACCESS)
        epoch = self.store.check(claims["jti"], claims.get("family"))
        if self.actors is None:
            return Authenticated(actor_for_token(session, claims), claims)
        actor = self.actors.resolve(
            token_key(claims), epoch, lambda: (actor_for_token(session, claims), None)
        )
        return Authenticated(actor, claims)

    def refresh(self, session: Session, refresh_token: str) -> IssuedTokens:
        """Rotate a refresh token: new tokens in its family; a second use revokes the family."""
        claims = self.decode(refresh_token, expected=REFRESH)
        user = user_for_token(session, claims)
        family = claims.get("family")
        if self.store.is_revoked(claims["jti"], family):
            # Revoked already, by rotation or logout: the token leaked, so end its session.
            self._revoke_family(family)
            raise Unauthenticated(
                "This refresh token was already used or revoked; its session is now revoked"
            )
        if not self.store.consume(claims["jti"], claims["exp"]):
            self._revoke_family(family)
            raise Unauthenticated("This refresh token was already used; its session is now revoked")
        return self.issue(user, family=family)

    def logout(self, access_claims: Mapping[str, Any], refresh_token: str | None = None) -> None:
        """Revoke an access token and its session, and a refresh token of the same user."""
        self.store.revoke(access_claims["jti"], access_claims["exp"])
        self._revoke_family(access_claims.get("family"))
        if refresh_token:
            refresh_claims = self.decode(refresh_token, expected=REFRESH)
            if refresh_claims["sub"] != access_claims["sub"]:
                raise Unauthenticated("The refresh token belongs to another user")
            self.store.revoke(refresh_claims["jti"], refresh_claims["exp"])
            self._revoke_family(refresh_claims.get("family"))

    def _revoke_family(self, family: str | None) -> None:
        if family:
            self.store.revoke_family(family, int(self.refresh_lifetime.total_seconds()))
