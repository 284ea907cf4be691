"""Who is calling: call metadata → ``Actor``, with the same core calls as the REST edge."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from app.errors import Unauthenticated
from app.runtime import Runtime
from app.services.actors import Actor
from app.services.ratelimit import RateLimited
from app.services.tokens import bearer_token

_actor: ContextVar[Actor] = ContextVar("taskforge_grpc_actor")
_REQUIRED = "Authentication required: send 'authorization: Bearer <token>' or 'x-api-key' metadata"


def _credentials(
    metadata: Sequence[tuple[str, str | bytes]] | None,
) -> tuple[str | None, str | None]:
    """The ``x-api-key`` and ``authorization`` values of the call's metadata."""
    headers = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
    return headers.get("x-api-key"), headers.get("authorization")


def current_actor() -> Actor:
    """The actor of the call being served (set by the interceptor)."""
    try:
        return _actor.get()
    except LookupError:
        raise Unauthenticated("Authentication required") from None


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Make ``actor`` the current actor for the duration of the block."""
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


class Authenticator:
    """Verify ``authorization: Bearer <jwt>`` or ``x-api-key`` metadata."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Actor:
        """Return the actor the metadata's credentials stand for."""
        api_key, authorization = _credentials(metadata)
        if not api_key and not authorization:
            raise Unauthenticated(_REQUIRED)
        with self._runtime.session_scope() as session:
            if api_key:
                return self._runtime.actors.for_api_key(session, api_key)
            assert authorization is not None
            return self._runtime.tokens.authenticate(session, bearer_token(authorization)).actor

    def admit(self, metadata: Sequence[tuple[str, str | bytes]] | None, address: str) -> Actor:
        """Authenticate and spend the call's budget (``Gate.admit``); raise what refuses it."""
        gate = self._runtime.gate
        assert gate is not None, "admit needs rate limits on"
        api_key, authorization = _credentials(metadata)
        with self._runtime.session_scope() as session:
            admission = gate.admit(
                session, authorization=authorization, api_key=api_key, address=address
            )
        verdict = admission.verdict
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict)
        if admission.actor is None:
            raise admission.error or Unauthenticated(_REQUIRED)
        return admission.actor
