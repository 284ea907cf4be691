"""The event consumer's SQL lookups: which organization, queue and type a job belongs to.

Celery events name a task id (``<job id>:<attempt>``), never a tenant; the lookups
answer from SQL once per job and keep the answer in a small LRU.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import func, or_, select

from app.db import session_scope
from app.models import Job, JobStatus, Queue, Worker, utcnow

K = TypeVar("K")
V = TypeVar("V")

CACHE_SIZE = 10_000
PRELOAD_CHUNK = 500


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, load: Callable[[K], V | None]) -> V | None:
        """Return the cached value, loading (and caching) it on a miss; None is not cached."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load(key)
        if value is not None:
            self.put(key, value)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, key: K, value: V) -> None:
        """Cache ``value`` under ``key``."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class JobInfo:
    """What the monitor needs to know about a job to file its events."""

    organization_id: str
    queue_id: str
    job_type: str
    created_at: datetime
    scheduled_for: datetime | None


class Lookups:
    """Cached SQL lookups for the monitor."""

    def __init__(self, database_url: str, size: int = CACHE_SIZE) -> None:
        self.database_url = database_url
        self._jobs: LRU[uuid.UUID, JobInfo] = LRU(size)
        self._queues: LRU[uuid.UUID, str] = LRU(size)

    def job(self, job_id: uuid.UUID) -> JobInfo | None:
        """The job's organization, queue and type; None for an unknown job."""
        return self._jobs.get(job_id, self._load_job)

    def queue_organization(self, queue_id: uuid.UUID) -> str | None:
        """The organization owning ``queue_id``; None for an unknown queue."""
        return self._queues.get(queue_id, self._load_queue)

    def preload(self, job_ids: Iterable[uuid.UUID]) -> None:
        """Cache the jobs not cached yet with one query per ``PRELOAD_CHUNK`` of them."""
        missing = list({job_id for job_id in job_ids if job_id not in self._jobs})
        for start in range(0, len(missing), PRELOAD_CHUNK):
            for job_id, info in self._load_jobs(missing[start : start + PRELOAD_CHUNK]).items():
                self._jobs.put(job_id, info)

    def _load_job(self, job_id: uuid.UUID) -> JobInfo | None:
        return self._load_jobs([job_id]).get(job_id)

    def _load_jobs(self, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobInfo]:
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(
                    Job.id,
                    Job.organization_id,
                    Job.queue_id,
                    Job.job_type,
                    Job.created_at,
                    Job.scheduled_for,
                ).where(Job.id.in_(job_ids))
            ).all()
        return {
            row.id: JobInfo(
                organization_id=str(row.organization_id),
                queue_id=str(row.queue_id),
                job_type=row.job_type,
                created_at=row.created_at,
                scheduled_for=row.scheduled_for,
            )
            for row in rows
        }

    def _load_queue(self, queue_id: uuid.UUID) -> str | None:
        with session_scope(self.database_url) as session:
            org = session.scalar(select(Queue.organization_id).where(Queue.id == queue_id))
        return str(org) if org is not None else None

    def error(self, job_id: uuid.UUID) -> str | None:
        """The job's last error as SQL recorded it (not cached: it changes per attempt)."""
        with session_scope(self.database_url) as session:
            return session.scalar(select(Job.error).where(Job.id == job_id))

    def registered_workers(self) -> dict[str, dict[str, object]]:
        """Nodename → SQL row of every self-registered worker."""
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(
                    Worker.id,
                    Worker.hostname,
                    Worker.organization_id,
                    Worker.status,
                    Worker.worker_type,
                    Worker.queues,
                    Worker.job_types,
                    Worker.registered_at,
                )
                .where(Worker.hostname.is_not(None))
                .order_by(Worker.registered_at)
            ).all()
        # Ordered by registration, so the latest row of a reused nodename wins.
        return {
            str(row.hostname): {
                "id": str(row.id),
                "organization_id": str(row.organization_id) if row.organization_id else None,
                "status": row.status.value,
                "worker_type": row.worker_type.value,
                "queues": list(row.queues or []),
                "job_types": list(row.job_types) if row.job_types is not None else None,
            }
            for row in rows
        }

    def oldest_waiting(self) -> dict[str, float]:
        """Queue id → epoch since which its longest-waiting due job has waited to start.

        A job waits from the moment it may run: its ``available_at`` (schedule or
        retry time) or, without one, its creation.  Due ``scheduled`` jobs wait too;
        jobs not due yet do not.
        """
        now = utcnow()
        since = func.coalesce(Job.available_at, Job.created_at)
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(Job.queue_id, func.min(since))
                .where(
                    Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
                    or_(Job.available_at.is_(None), Job.available_at <= now),
                )
                .group_by(Job.queue_id)
            ).all()
        return {str(queue_id): oldest.timestamp() for queue_id, oldest in rows if oldest}
