"""Who is calling: call metadata → ``Actor``, with the same core calls as the REST edge."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from app.errors import Unauthenticated
from app.runtime import Runtime
from app.services.actors import Actor
from app.services.tokens import bearer_token

_actor: ContextVar[Actor] = ContextVar("taskforge_grpc_actor")


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
        headers = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if not api_key and not authorization:
            raise Unauthenticated(
                "Authentication required: send 'authorization: Bearer <token>' or 'x-api-key' "
                "metadata"
            )
        with self._runtime.session_scope() as session:
            if api_key:
                return self._runtime.actors.for_api_key(session, api_key)
            assert authorization is not None
            return self._runtime.tokens.authenticate(session, bearer_token(authorization)).actor
