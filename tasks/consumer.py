"""The worker's consumer: Celery's, sending its task events in batches a few at a time.

Celery's consumer already buffers task events and sends them as one
``task.multi`` message, but it flushes that buffer on the next turn of the event
loop, so at a few jobs in flight every event (received, started, succeeded) is
one ``PUBLISH`` of its own: measured, 45% of a draining worker's main process.
This consumer flushes at most every :data:`EVENT_FLUSH_SECONDS`, so a busy
worker sends a handful of messages where it sent hundreds.  Celery's dispatcher
also flushes once 24 events wait, which at a few hundred jobs a second is still
a ``PUBLISH`` every eight jobs; the consumer raises that limit to
:data:`EVENT_BUFFER_LIMIT`, so the timer decides and the limit only bounds what
one message carries.  Measured on PostgreSQL drains, the higher limit took a
tracked worker from 0.525 to 0.541 of raw Celery's rate (docs/performance.md,
"Task events flushed by the timer alone").  Each event keeps the time it was
made, so the monitor (which applies events in batches up to 0.1 s late anyway)
records the same times, a moment later.

Installed by ``worker_consumer`` in ``celeryconfig.py``.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

# How long a task event may wait for others to share its message.
EVENT_FLUSH_SECONDS = 0.1
# How many task events one message may carry (Celery's own limit is 24).
EVENT_BUFFER_LIMIT = 1000


class Consumer(CeleryConsumer):
    """Celery's consumer, flushing buffered task events on a short timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_entry: Any = None

    def on_send_event_buffered(self) -> None:
        """Send the buffered events within :data:`EVENT_FLUSH_SECONDS`, with those that follow."""
        if not self.hub:
            return
        # Called while fewer than the dispatcher's limit wait, so the first event
        # a dispatcher buffers (one is made at every connect) raises its limit.
        dispatcher = self.event_dispatcher
        if dispatcher is not None and dispatcher.buffer_limit < EVENT_BUFFER_LIMIT:
            dispatcher.buffer_limit = EVENT_BUFFER_LIMIT
        # A reconnect cancels the loop's timer entries; a cancelled flush is scheduled anew.
        if self._flush_entry is None or self._flush_entry.canceled:
            self._flush_entry = self.hub.call_later(EVENT_FLUSH_SECONDS, self._flush_buffered)

    def _flush_buffered(self) -> None:
        self._flush_entry = None
        self._flush_events()

    def shutdown(self) -> None:
        """Send what is still buffered before the event connection closes."""
        self._flush_events()
        super().shutdown()
