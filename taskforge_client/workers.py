"""/workers: list, get, drain."""

from __future__ import annotations

from taskforge_client.models import Page, Worker, id_of, load, load_page
from taskforge_client.transport import Transport

WorkerRef = str | Worker


class Workers:
    """The organization's registered workers."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def list(
        self,
        *,
        page: int = 1,
        limit: int = 10,
        status: str | None = None,
        worker_type: str | None = None,
        project_id: str | None = None,
    ) -> Page[Worker]:
        """One page of workers, by name."""
        params = {
            "page": page,
            "limit": limit,
            "status": status,
            "worker_type": worker_type,
            "project_id": project_id,
        }
        return load_page(Worker, "workers", self._transport.call("GET", "workers", params=params))

    def get(self, worker: WorkerRef) -> Worker:
        """Get a worker."""
        return load(Worker, self._transport.call("GET", f"workers/{id_of(worker)}"))

    def drain(self, worker: WorkerRef) -> Worker:
        """Drain a worker: no new jobs; it finishes its running ones, then goes offline."""
        answer = self._transport.call("POST", f"workers/{id_of(worker)}/drain", retry_safe=True)
        return load(Worker, answer)
