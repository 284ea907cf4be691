"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""

from app.models.audit import AuditEvent
from app.models.base import Base, utcnow
from app.models.jobs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    AttemptStatus,
    Job,
    JobAttempt,
    JobCount,
    JobStatus,
    Queue,
    job_count_deltas,
)
from app.models.tenancy import ApiKey, Organization, Project, Role, User
from app.models.workers import Worker, WorkerStatus, WorkerType

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "ApiKey",
    "AttemptStatus",
    "AuditEvent",
    "Base",
    "Job",
    "JobAttempt",
    "JobCount",
    "JobStatus",
    "Organization",
    "Project",
    "Queue",
    "Role",
    "User",
    "Worker",
    "WorkerStatus",
    "WorkerType",
    "job_count_deltas",
    "utcnow",
]
