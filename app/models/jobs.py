"""Queues, jobs and the record of every attempt."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Enum,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.celery_names import job_queue_name
from app.models.base import Base, JSONType, Timestamps, UUIDPrimaryKey, utcnow


class JobStatus(enum.StrEnum):
    """A job's lifecycle state; gRPC numbers follow the declaration order."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.PROCESSING})


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


def _partial(name: str, *columns: str, where: str) -> Index:
    """An index of only the rows that match ``where``, on SQLite and PostgreSQL alike."""
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


class Queue(UUIDPrimaryKey, Timestamps, Base):
    """A TaskForge queue; its jobs travel on the Celery queue ``tf.<id>``."""

    __tablename__ = "queues"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    priority: Mapped[int] = mapped_column(default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Dispatch limits enforced across all workers (app.services.policies); NULL: none.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)

    @property
    def celery_queue(self) -> str:
        """The name of the Celery queue that carries this queue's jobs."""
        return job_queue_name(self.id)


class Job(UUIDPrimaryKey, Timestamps, Base):
    """One unit of work; SQL is the record of truth for its state."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The job list's order (created_at DESC, id DESC), per filter: each page is
        # read off one index, and a deep page is skipped inside it.
        Index("ix_jobs_org_status_created_id", "organization_id", "status", "created_at", "id"),
        Index("ix_jobs_org_created_id", "organization_id", "created_at", "id"),
        Index("ix_jobs_queue_status_created_id", "queue_id", "status", "created_at", "id"),
        Index("ix_jobs_queue_created_id", "queue_id", "created_at", "id"),
        Index("ix_jobs_queue_updated", "queue_id", "updated_at"),
        # The maintenance tasks' indexes are partial: each holds only the few jobs
        # its task looks for, so a claim or a success (which change ``status``,
        # ``updated_at`` and the lease) rewrites none or one of them, not four.
        _partial("ix_jobs_unpublished", "updated_at", where="published_at IS NULL"),
        _partial("ix_jobs_pending_published", "published_at", where="status = 'pending'"),
        _partial("ix_jobs_lease", "lease_expires_at", where="lease_expires_at IS NOT NULL"),
        _partial("ix_jobs_held", "held_since", where="held_since IS NOT NULL"),
        _partial("ix_jobs_redrive", "redrive_id", "status", where="redrive_id IS NOT NULL"),
        UniqueConstraint("organization_id", "idempotency_key"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    queue_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    job_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.PENDING)
    priority: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    attempt_count: Mapped[int] = mapped_column(default=0)
    scheduled_for: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    worker_name: Mapped[str | None] = mapped_column(String(255))
    # When the next attempt may start: ``scheduled_for`` at first, then the
    # retry time chosen by the backoff.  NULL means "now".
    available_at: Mapped[datetime | None]
    # Outbox marker: NULL until the wake-up message for the current attempt is
    # handed to the broker; the relay publishes rows left NULL by a crash, a
    # broker outage, a pause or a far-future schedule.
    published_at: Mapped[datetime | None]
    # While ``processing``, the running worker keeps pushing this forward; a
    # lease that runs out means the worker died, and the sweeper takes over.
    lease_expires_at: Mapped[datetime | None]
    # Bumped by every write that sets ``published_at`` back to NULL.  A publisher
    # stamps ``published_at`` only on the generation it published, so a stamp that
    # lands late cannot undo a reset made after its message went out.
    dispatch_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # Set while the current message sits with one worker instead of in the shared
    # queue: an ETA message (its due time) or a hand-off to one worker's own queue
    # (the hand-off time).  A job still unclaimed a lease later is published to
    # its shared queue again; NULL while the message waits in the shared queue.
    held_since: Mapped[datetime | None]
    # A job made by a dead-letter redrive: the failed job it re-runs (unique: a
    # dead letter is redriven once, however many redrives race for it), and the
    # redrive (its audit event) that made it, which stops when its jobs fail again.
    redriven_from: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    redrive_id: Mapped[uuid.UUID | None]


class JobCount(Base):
    """How many of an organization's jobs one queue holds in one status.

    Written only by SQL triggers on ``jobs`` (migration ``0008_job_counts``), in the
    transaction that changes the jobs: on SQLite they count here directly, on
    PostgreSQL they append to ``job_count_deltas``, which
    ``app.services.job_counts.fold`` moves here.  The exact count is the sum of both.
    """

    __tablename__ = "job_counts"

    organization_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    queue_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


# Append-only changes to ``job_counts`` (+n, -n) not folded in yet.  Inserting a row
# locks nothing another transaction holds, so submitters and workers never wait
# for each other on a counter (PostgreSQL; unused on SQLite).  No primary key:
# rows are only summed and deleted in bulk.
job_count_deltas = Table(
    "job_count_deltas",
    Base.metadata,
    Column("organization_id", Uuid(), nullable=False),
    Column("queue_id", Uuid(), nullable=False),
    Column("status", _enum(JobStatus), nullable=False),
    Column("n", BigInteger(), nullable=False),
    Index("ix_job_count_deltas_org_queue", "organization_id", "queue_id"),
)


class AttemptStatus(enum.StrEnum):
    """The outcome of one attempt."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    # Stopped by a cancel (REST, gRPC) or a Celery revoke with terminate.
    CANCELLED = "cancelled"


class JobAttempt(UUIDPrimaryKey, Base):
    """One execution of a job by a worker; kept across retries."""

    __tablename__ = "job_attempts"
    # Also the index of a job's attempts (and of the cascade from ``jobs``).
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int]
    status: Mapped[AttemptStatus] = mapped_column(
        _enum(AttemptStatus), default=AttemptStatus.RUNNING
    )
    worker_name: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
