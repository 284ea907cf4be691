"""Server-sent events: a bounded stream of one organization's monitor events.

Each stream lives at most ``TASKFORGE_SSE_MAX_SECONDS`` (30), sends a
``: keepalive`` comment every ``TASKFORGE_SSE_KEEPALIVE_SECONDS`` (10) and ends
with ``retry: 1000`` so the browser reconnects.  A process serves at most
``TASKFORGE_SSE_MAX_STREAMS`` (4) streams at once, so streams can never take
every thread of an API worker; one more answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Iterator

from flask import Flask, Response
from redis.client import PubSub

RETRY_MILLISECONDS = 1000
POLL_SECONDS = 1.0
_SLOTS_KEY = "taskforge.sse_slots"


def stream_slots(app: Flask, size: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore bounding concurrent streams of ``app``."""
    slots: threading.BoundedSemaphore = app.extensions.setdefault(
        _SLOTS_KEY, threading.BoundedSemaphore(size)
    )
    return slots


def frames(
    pubsub: PubSub,
    *,
    kinds: Collection[str],
    max_seconds: float,
    keepalive_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[str]:
    """Yield SSE frames for the subscribed events of ``kinds`` until the stream's time is up."""
    deadline = clock() + max_seconds
    next_keepalive = clock() + keepalive_seconds
    yield ": connected\n\n"
    while (now := clock()) < deadline:
        wait = max(min(POLL_SECONDS, deadline - now, next_keepalive - now), 0.01)
        message = pubsub.get_message(timeout=wait)
        if message and message.get("type") == "message":
            envelope = json.loads(message["data"])
            if envelope.get("event") in kinds:
                data = json.dumps(envelope["data"], separators=(",", ":"))
                yield f"event: {envelope['event']}\ndata: {data}\n\n"
        if clock() >= next_keepalive:
            yield ": keepalive\n\n"
            next_keepalive = clock() + keepalive_seconds
    yield f"retry: {RETRY_MILLISECONDS}\n\n"


def event_stream_response(
    pubsub: PubSub,
    release: Callable[[], None],
    *,
    kinds: Collection[str],
    max_seconds: float,
    keepalive_seconds: float,
) -> Response:
    """A ``text/event-stream`` response; the subscription and slot are freed when it closes."""
    closed = threading.Event()

    def close() -> None:
        if not closed.is_set():
            closed.set()
            pubsub.close()
            release()

    response = Response(
        frames(pubsub, kinds=kinds, max_seconds=max_seconds, keepalive_seconds=keepalive_seconds),
        mimetype="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
    response.call_on_close(close)
    return response
