"""The worker's consumer: Celery's, sending its task events in batches a few at a time.

Celery's consumer already buffers task events and sends them as one
``task.multi`` message, but it flushes that buffer on the next turn of the event
loop, so at a few jobs in flight every event (received, started, succeeded) is
one ``PUBLISH`` of its own: measured, 45% of a draining worker's main process.
This consumer flushes at most every :data:`EVENT_FLUSH_SECONDS` (or when
Celery's buffer limit of 24 events is reached), so a busy worker sends a handful
of messages where it sent hundreds.  Each event keeps the time it was made, so
the monitor (which applies events in batches up to 0.1 s late anyway) records
the same times, a moment later.

Installed by ``worker_consumer`` in ``celeryconfig.py``.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

# How long a task event may wait for others to share its message.
EVENT_FLUSH_SECONDS = 0.1


class Consumer(CeleryConsumer):
    """Celery's consumer, flushing buffered task events on a short timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_entry: Any = None

    def on_send_event_buffered(self) -> None:
        """Send the buffered events within :data:`EVENT_FLUSH_SECONDS`, with those that follow."""
        if not self.hub:
            return
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
