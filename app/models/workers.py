"""Workers registered with TaskForge."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UUIDPrimaryKey, utcnow


class WorkerType(enum.StrEnum):
    """What kind of work a worker is built for; gRPC numbers follow this order."""

    GENERAL = "general"
    SPECIALIZED_CPU = "specialized_cpu"
    SPECIALIZED_IO = "specialized_io"
    SPECIALIZED_GPU = "specialized_gpu"


class WorkerStatus(enum.StrEnum):
    """A worker's liveness; gRPC numbers follow this order."""

    ONLINE = "online"
    OFFLINE = "offline"
    DRAINING = "draining"
    UNHEALTHY = "unhealthy"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Worker(UUIDPrimaryKey, Base):
    """A Celery worker process known to TaskForge.

    ``organization_id`` is NULL for shared platform workers.
    """

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_org_status", "organization_id", "status"),)

    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    worker_type: Mapped[WorkerType] = mapped_column(_enum(WorkerType), default=WorkerType.GENERAL)
    status: Mapped[WorkerStatus] = mapped_column(_enum(WorkerStatus), default=WorkerStatus.ONLINE)
    capabilities: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # The job types a self-registered worker has handlers for (NULL: not advertised).
    job_types: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    max_concurrent_jobs: Mapped[int] = mapped_column(default=1)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    drain_mode: Mapped[bool] = mapped_column(default=False)
    heartbeat_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_heartbeat: Mapped[datetime | None]
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
