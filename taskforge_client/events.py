"""The live event stream (``GET /monitor/events``): task and worker events as they happen.

The server ends every stream after a while (30 s by default) with a ``retry`` hint, and
``iter_events`` opens the next one, so the caller sees one endless stream.  Events sent
while it reconnects are not replayed (the server keeps no stream history): read a job
or ``monitor.tasks`` to catch up, as ``EventFeed`` users such as ``Jobs.follow`` do.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Collection, Iterator
from types import TracebackType
from typing import cast

from httpx_sse import EventSource

from taskforge_client.errors import RateLimited, TransportError, Unavailable
from taskforge_client.models import Event, LiveWorker, TaskEvent, load
from taskforge_client.transport import Transport

EVENTS_PATH = "monitor/events"
KINDS = ("task", "worker")
DEFAULT_RECONNECT_SECONDS = 1.0
# Longer than the server's keepalive interval (10 s by default), so a quiet stream lives.
READ_TIMEOUT_SECONDS = 60.0


def stream_params(transport: Transport) -> dict[str, str]:
    """The query parameters that authenticate a new stream.

    The stream accepts the ``Authorization`` / ``X-API-Key`` headers that the transport
    sends with every request, so none are needed.  If the server comes to require a
    single-use stream ticket, this is the one place that mints it.
    """
    return {}


def parse_event(kind: str, data: str) -> Event | None:
    """The event in one SSE frame; None for a kind this client does not know."""
    if kind == "task":
        return load(TaskEvent, json.loads(data))
    if kind == "worker":
        return load(LiveWorker, json.loads(data))
    return None


def iter_events(
    transport: Transport,
    *,
    kinds: Collection[str] = KINDS,
    reconnect: bool = True,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    on_connect: Callable[[], None] | None = None,
) -> Iterator[Event]:
    """Yield the organization's events of ``kinds``; reconnect when a stream ends.

    ``on_connect`` is called each time a stream is open: from then on, no event is
    missed until that stream ends.  A failed connection is retried with the
    transport's ``RetryPolicy`` (honouring ``Retry-After`` when the server has too
    many streams open); past its attempts, or on any other error (e.g.
    ``Unauthenticated``), the error is raised.
    """
    pause = DEFAULT_RECONNECT_SECONDS
    failures = 0
    while True:
        try:
            params = stream_params(transport)
            with transport.stream(EVENTS_PATH, params=params, read_timeout=read_timeout) as answer:
                failures = 0
                if on_connect is not None:
                    on_connect()
                for frame in EventSource(answer).iter_sse():
                    if frame.retry is not None:
                        pause = frame.retry / 1000
                    if frame.event in kinds and (event := parse_event(frame.event, frame.data)):
                        yield event
        except (TransportError, Unavailable, RateLimited) as exc:
            failures += 1
            delay = transport.retry.delay(failures, exc.retry_after) if reconnect else None
            if delay is None:
                raise
            transport.retry.sleep(delay)
            continue
        if not reconnect:
            return
        transport.retry.sleep(pause)


_END = object()


class _Closed(Exception):
    """Ends the reader thread of a closed feed."""


class EventFeed:
    """Read the event stream in a background thread; ``get`` waits for the next event.

    Lets a caller wait for an event *or* a timeout (to poll state the stream does not
    carry).  ``wait_connected`` tells when the first stream is open.  ``close`` stops
    handing events out; the daemon thread ends with its current stream (30 s at most by
    default) or with the process.
    """

    def __init__(self, transport: Transport, *, kinds: Collection[str] = KINDS) -> None:
        self._transport = transport
        self._kinds = tuple(kinds)
        self._events: queue.Queue[object] = queue.Queue()
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="taskforge-events", daemon=True)

    def __enter__(self) -> EventFeed:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        try:
            for event in iter_events(
                self._transport, kinds=self._kinds, on_connect=self._on_connect
            ):
                if self._closed.is_set():
                    return
                self._events.put(event)
        except Exception as exc:  # handed to the reading thread by get()
            self._error = exc
        self._events.put(_END)
        self._connected.set()  # wake a waiter: get() now reports the end

    def _on_connect(self) -> None:
        if self._closed.is_set():
            raise _Closed  # a closed feed opens no new stream: its thread ends here
        self._connected.set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the first stream is open (or the feed ended); False on timeout."""
        return self._connected.wait(timeout)

    def get(self, timeout: float) -> Event | None:
        """The next event; None if ``timeout`` seconds pass first; raise if the stream failed."""
        try:
            item = self._events.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None
        if item is _END:
            self._events.put(_END)
            if self._error is not None:
                raise self._error
            return None
        return cast(Event, item)

    def close(self) -> None:
        """Stop handing out events."""
        self._closed.set()
