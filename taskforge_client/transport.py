"""HTTP plumbing of the REST client: auth headers, one transparent refresh, retries, errors.

A request is sent again (see ``RetryPolicy``) when that cannot do anything twice:

- on a connection error, a 429 or a 502/503/504, when it is *retry-safe*: an
  idempotent method (GET, PUT, DELETE) or a request the caller marks safe (a submit
  carrying an ``Idempotency-Key``, pause/resume);
- on any request, when the server provably did not act on it: the connection could
  not be opened, or the rate limiter refused it (429, answered before any handler).

Other 4xx answers are never retried.  A 401 to a request that sent an access token is
cured once by refreshing the token, when the client holds a refresh token.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from taskforge_client.credentials import Credentials
from taskforge_client.errors import TaskForgeError, TransportError, error_for_status
from taskforge_client.models import Tokens, load
from taskforge_client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

API_PREFIX = "/api/v1"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
USER_AGENT = "taskforge-client"
# Failures that prove the request never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Unset(enum.Enum):
    """The type of ``UNSET``: a field left out of a request, where None would mean null."""

    UNSET = "unset"


UNSET = Unset.UNSET


def present(**fields: Any) -> dict[str, Any]:
    """The request fields that were given (not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def api_url(base_url: str) -> str:
    """The ``/api/v1`` root under ``base_url`` (which may already end with it)."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PREFIX):
        path += API_PREFIX
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def error_from_response(response: httpx.Response) -> TaskForgeError:
    """The exception for an error answer in the API's ``{"error", "errors"?}`` shape."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
    else:
        message = f"HTTP {response.status_code}: {response.text[:200] or response.reason_phrase}"
        errors = None
    return error_for_status(
        response.status_code,
        message,
        errors=errors,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


class Transport:
    """Send requests to one TaskForge API with one set of credentials."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = api_url(base_url)
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=http_transport,
        )
        self._refresh_lock = threading.Lock()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> Any:
        """Send a request and return its decoded JSON body (None for 204)."""
        response = self.request(
            method, path, json=json, params=params, headers=headers, retry_safe=retry_safe
        )
        return None if response.status_code == 204 or not response.content else response.json()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> httpx.Response:
        """Send a request with retries (see the module docstring); raise on an error answer."""
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if retry_safe is None else retry_safe
        query = {k: v for k, v in (params or {}).items() if v is not None}
        retry = 0
        while True:
            retry += 1
            try:
                response = self._send(method, path, json, content, query, headers or {})
            except httpx.TransportError as exc:
                delay = self.retry.delay(retry) if safe or isinstance(exc, NOT_SENT) else None
                if delay is None:
                    raise TransportError(f"{method} {path}: {exc or type(exc).__name__}") from exc
            else:
                if response.status_code < 400:
                    return response
                error = error_from_response(response)
                retryable = response.status_code == 429 or (
                    safe and response.status_code in RETRY_STATUSES
                )
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = self.retry.delay(retry, retry_after) if retryable else None
                if delay is None:
                    raise error
            self.retry.sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, Any],
        extra: Mapping[str, str],
    ) -> httpx.Response:
        """Send once; on a 401 to an access token, refresh it and send once more."""
        for first in (True, False):
            sent = self.credentials.headers()
            response = self._http.request(
                method,
                path.lstrip("/"),
                json=json,
                content=content,
                params=params,
                headers={**sent, **extra},
            )
            if not (first and response.status_code == 401 and self.credentials.can_refresh(sent)):
                break
            self.refresh(stale=sent)
        return response

    def refresh(self, *, stale: Mapping[str, str] | None = None) -> Tokens:
        """Trade the refresh token for new tokens; skip when ``stale`` is no longer current."""
        with self._refresh_lock:
            current = self.credentials.headers()
            token = self.credentials.refresh_token
            if stale is not None and current != stale and self.credentials.access_token:
                # Another thread refreshed while this one waited for the lock.
                return Tokens(access_token=self.credentials.access_token, refresh_token=token)
            if token is None:
                raise TaskForgeError("No refresh token: log in first")
            try:
                response = self._http.post("auth/refresh", json={"refresh_token": token})
            except httpx.TransportError as exc:
                raise TransportError(f"POST auth/refresh: {exc}") from exc
            if response.status_code != 200:
                raise error_from_response(response)
            tokens = load(Tokens, response.json())
            self.credentials.set_tokens(tokens)
            return tokens

    @contextmanager
    def stream(
        self, path: str, *, params: Mapping[str, Any] | None = None, read_timeout: float = 60.0
    ) -> Iterator[httpx.Response]:
        """Open a server-sent event stream (refreshing once on a 401); raise on an error."""
        timeout = httpx.Timeout(self.timeout, read=read_timeout)
        for first in (True, False):
            sent = self.credentials.headers()
            headers = {**sent, "Accept": "text/event-stream", "Cache-Control": "no-store"}
            try:
                with self._http.stream(
                    "GET", path.lstrip("/"), params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code < 400:
                        yield response
                        return
                    response.read()
            except httpx.TransportError as exc:
                raise TransportError(f"GET {path}: {exc or type(exc).__name__}") from exc
            if not (first and response.status_code == 401 and self.credentials.can_refresh(sent)):
                raise error_from_response(response)
            self.refresh(stale=sent)
