"""/monitor: the live view of workers, recent task events and queues."""

from __future__ import annotations

from datetime import datetime

from taskforge_client.models import LiveQueue, LiveWorker, Queue, TaskEvent, id_of, load
from taskforge_client.transport import Transport


class Monitor:
    """The flower-style live view of the organization."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def workers(self) -> list[LiveWorker]:
        """Workers of the organization or consuming its queues, with their live state."""
        body = self._transport.call("GET", "monitor/workers")
        return [load(LiveWorker, item) for item in body["workers"]]

    def tasks(
        self,
        *,
        queue: str | Queue | None = None,
        state: str | None = None,
        job_type: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[TaskEvent]:
        """Recent task events, newest first; ``queue`` is a queue id or a ``Queue``."""
        params = {
            "queue_id": id_of(queue) if queue else None,
            "state": state,
            "job_type": job_type,
            "since": since.isoformat() if since else None,
            "limit": limit,
        }
        body = self._transport.call("GET", "monitor/tasks", params=params)
        return [load(TaskEvent, item) for item in body["tasks"]]

    def queues(self) -> list[LiveQueue]:
        """Each queue with broker depth, consumers, throughput and oldest wait."""
        body = self._transport.call("GET", "monitor/queues")
        return [load(LiveQueue, item) for item in body["queues"]]
