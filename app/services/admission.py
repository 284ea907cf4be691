"""Admit a call: authenticate it and spend its rate-limit budgets, in one Redis round trip.

With a cached actor (``app.services.actor_cache``), the rate-limit script checks
the token blocklist and the actor epoch before it spends: one round trip for the
blocklist, the cache's validity and the limit together.  A cache miss, a moved
epoch or a credential that does not verify costs a second one (the actor is then
read from SQL, or the call is limited on its address), as does every call when
no actor is cached.  Both edges admit every call this way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.errors import TaskForgeError, Unauthenticated, Unavailable
from app.services.actor_cache import ActorCache, Load, api_key_key, token_key
from app.services.actor_epoch import EPOCH_KEY
from app.services.actors import Actor
from app.services.auth import actor_for_token, resolve_api_key
from app.services.ratelimit import Guard, GuardFailed, RateLimiter, Verdict
from app.services.tokens import ACCESS, REVOKED, TokenService, bearer_token


@dataclass(frozen=True)
class Admission:
    """Who a call is (None: its credentials did not verify, see ``error``) and its verdict."""

    actor: Actor | None
    verdict: Verdict | None
    claims: dict[str, Any] | None = None
    error: TaskForgeError | None = None


@dataclass(frozen=True)
class _Credential:
    key: Hashable
    load: Load  # read the actor from SQL
    authenticate: Callable[[], Actor]  # the whole check, without the cache's entry
    revoked_keys: list[str]
    claims: dict[str, Any] | None


class Gate:
    """Authenticate calls and spend their budgets, with the process's actor cache."""

    def __init__(self, tokens: TokenService, actors: ActorCache, limiter: RateLimiter) -> None:
        self._tokens = tokens
        self._actors = actors
        self._limiter = limiter

    def admit(
        self,
        session: Session,
        *,
        authorization: str | None,
        api_key: str | None,
        address: str,
        cost: int = 1,
    ) -> Admission:
        """Authenticate by ``api_key``, else the ``authorization`` bearer token; spend ``cost``.

        A credential that does not verify spends from the address's budget and is
        returned as ``error``; a call without credentials spends from it too.
        """
        if not api_key and not authorization:
            return self._anonymous(address, cost)
        try:
            credential = self._credential(session, authorization, api_key)
        except TaskForgeError as exc:
            return self._anonymous(address, cost, exc)
        cached = self._actors.peek(credential.key)
        if cached is None:
            return self._uncached(credential, address, cost)
        budgets = self._limiter.budgets(cached.actor, address)
        guard = Guard(EPOCH_KEY, cached.epoch, credential.revoked_keys)
        try:
            outcome = self._limiter.spend_guarded(budgets, cost, guard)
        except Unavailable:
            # Redis is down: no cache is trusted.  An API key still verifies in SQL;
            # a token fails closed there (its blocklist cannot be read).
            return self._uncached(credential, address, cost)
        if not isinstance(outcome, GuardFailed):
            return Admission(cached.actor, outcome, credential.claims)
        if outcome.revoked:
            return self._anonymous(address, cost, Unauthenticated(REVOKED))
        # Not revoked when the script ran; the epoch it read precedes this load.
        try:
            actor = self._actors.resolve(credential.key, outcome.epoch, credential.load)
        except TaskForgeError as exc:
            return self._anonymous(address, cost, exc)
        verdict = self._limiter.spend(self._limiter.budgets(actor, address), cost)
        return Admission(actor, verdict, credential.claims)

    def _uncached(self, credential: _Credential, address: str, cost: int) -> Admission:
        try:
            actor = credential.authenticate()
        except TaskForgeError as exc:
            return self._anonymous(address, cost, exc)
        verdict = self._limiter.spend(self._limiter.budgets(actor, address), cost)
        return Admission(actor, verdict, credential.claims)

    def _credential(
        self, session: Session, authorization: str | None, api_key: str | None
    ) -> _Credential:
        if api_key:
            return _Credential(
                api_key_key(api_key),
                lambda: resolve_api_key(session, api_key),
                lambda: self._actors.for_api_key(session, api_key),
                [],
                None,
            )
        assert authorization is not None
        token = bearer_token(authorization)
        claims = self._tokens.decode(token, expected=ACCESS)
        return _Credential(
            token_key(claims),
            lambda: (actor_for_token(session, claims), None),
            lambda: self._tokens.authenticate(session, token).actor,
            self._tokens.store.blocklist_keys(claims["jti"], claims.get("family")),
            claims,
        )

    def _anonymous(self, address: str, cost: int, error: TaskForgeError | None = None) -> Admission:
        verdict = self._limiter.spend(self._limiter.budgets(None, address), cost)
        return Admission(None, verdict, None, error)
