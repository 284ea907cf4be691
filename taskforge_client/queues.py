"""/queues: create, list, get, update, delete, pause, resume, stats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from taskforge_client.errors import NotFound
from taskforge_client.models import Page, Queue, QueueStats, id_of, load, load_page
from taskforge_client.transport import UNSET, Transport, Unset, present

QueueRef = str | Queue
MAX_PAGE_SIZE = 100


class Queues:
    """The organization's queues."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(self, *, page: int = 1, limit: int = 10, project_id: str | None = None) -> Page[Queue]:
        """One page of queues, by name."""
        params = {"page": page, "limit": limit, "project_id": project_id}
        return load_page(Queue, "queues", self._transport.call("GET", "queues", params=params))

    def iterate(self, *, project_id: str | None = None) -> Iterator[Queue]:
        """Every queue, page after page."""
        page = 1
        while True:
            batch = self.list(page=page, limit=MAX_PAGE_SIZE, project_id=project_id)
            yield from batch.items
            if page >= batch.pages:
                return
            page += 1

    def by_name(self, name: str) -> Queue:
        """The queue called ``name``; ``NotFound`` when there is none."""
        for queue in self.iterate():
            if queue.name == name:
                return queue
        raise NotFound(f"No queue named {name!r}", status_code=404)

    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        priority: int | None = None,
        settings: dict[str, Any] | None = None,
        project_id: str | None = None,
    ) -> Queue:
        """Create a queue (in the default project unless ``project_id`` says otherwise)."""
        body = present(
            name=name,
            description=description,
            priority=priority,
            settings=settings,
            project_id=project_id,
        )
        return load(Queue, self._transport.call("POST", "queues", json=body))

    def get(self, queue: QueueRef) -> Queue:
        """Get a queue."""
        return load(Queue, self._transport.call("GET", f"queues/{id_of(queue)}"))

    def update(
        self,
        queue: QueueRef,
        *,
        name: str | None = None,
        description: str | Unset | None = UNSET,
        priority: int | None = None,
        settings: dict[str, Any] | None = None,
        is_active: bool | None = None,
    ) -> Queue:
        """Change the fields given; ``description=None`` clears the description."""
        body = present(name=name, priority=priority, settings=settings, is_active=is_active)
        if description is not UNSET:
            body["description"] = description
        return load(Queue, self._transport.call("PATCH", f"queues/{id_of(queue)}", json=body))

    def delete(self, queue: QueueRef) -> None:
        """Delete a queue without active jobs (``Conflict`` otherwise)."""
        self._transport.call("DELETE", f"queues/{id_of(queue)}")

    def pause(self, queue: QueueRef) -> None:
        """Pause a queue: none of its jobs starts until it is resumed."""
        self._transport.call("POST", f"queues/{id_of(queue)}/pause", retry_safe=True)

    def resume(self, queue: QueueRef) -> None:
        """Resume a paused queue."""
        self._transport.call("POST", f"queues/{id_of(queue)}/resume", retry_safe=True)

    def stats(self, queue: QueueRef) -> QueueStats:
        """Count a queue's jobs per state, with broker depth and last activity."""
        return load(QueueStats, self._transport.call("GET", f"queues/{id_of(queue)}/stats"))
