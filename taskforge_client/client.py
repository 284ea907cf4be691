"""``TaskForge``: the REST client, one attribute per resource."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from taskforge_client.apikeys import ApiKeys
from taskforge_client.auth import Auth
from taskforge_client.credentials import Credentials, TokensCallback
from taskforge_client.events import KINDS, EventFeed, iter_events
from taskforge_client.jobs import Jobs
from taskforge_client.models import Event
from taskforge_client.monitor import Monitor
from taskforge_client.queues import Queues
from taskforge_client.retry import RetryPolicy
from taskforge_client.transport import Transport
from taskforge_client.workers import Workers

DEFAULT_TIMEOUT = 10.0


class TaskForge:
    """A client of one TaskForge API (``base_url``, e.g. ``http://127.0.0.1:8000``).

    Authenticate with ``token`` (an access token; with ``refresh_token`` it is renewed
    once, transparently, when it expires), with ``api_key``, or later with
    ``auth.login``.  ``on_tokens`` receives every new pair of tokens, to store them.
    Errors raise the classes of ``taskforge_client.errors``.  ``http_transport``
    replaces httpx's network transport (e.g. ``httpx.WSGITransport`` in tests).  Use it as a context
    manager, or call ``close``, to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_tokens: TokensCallback | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        credentials = Credentials(
            access_token=token, refresh_token=refresh_token, api_key=api_key, on_tokens=on_tokens
        )
        self._transport = Transport(
            base_url, credentials, timeout=timeout, retry=retry, http_transport=http_transport
        )
        self.auth = Auth(self._transport)
        self.queues = Queues(self._transport)
        self.jobs = Jobs(self._transport)
        self.api_keys = ApiKeys(self._transport)
        self.workers = Workers(self._transport)
        self.monitor = Monitor(self._transport)

    @property
    def base_url(self) -> str:
        """The API root this client talks to (ends with ``/api/v1``)."""
        return self._transport.base_url

    @property
    def credentials(self) -> Credentials:
        """The API key or tokens this client sends."""
        return self._transport.credentials

    def events(
        self,
        *,
        kinds: Collection[str] = KINDS,
        reconnect: bool = True,
        on_connect: Callable[[], None] | None = None,
    ) -> Iterator[Event]:
        """Iterate over live ``TaskEvent`` and ``LiveWorker`` events (``kinds``: task, worker).

        Each stream the server ends is followed by a new one (unless ``reconnect`` is
        False); ``on_connect`` is called whenever a stream is open.
        """
        return iter_events(self._transport, kinds=kinds, reconnect=reconnect, on_connect=on_connect)

    def event_feed(self, *, kinds: Collection[str] = KINDS) -> EventFeed:
        """A background reader of the event stream, to wait for an event or a timeout."""
        return EventFeed(self._transport, kinds=kinds)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send any request under ``/api/v1`` with this client's auth, retries and errors."""
        return self._transport.request(
            method, path, json=json, content=content, params=params, headers=headers
        )

    def close(self) -> None:
        """Release the client's connections."""
        self._transport.close()

    def __enter__(self) -> TaskForge:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
