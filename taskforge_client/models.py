"""Typed results: one frozen dataclass per resource, with the API's field names.

Timestamps are aware ``datetime`` objects (UTC when the server sent no offset), job
states are ``JobStatus`` members (a ``str`` enum, so ``job.status == "succeeded"``
holds), ids stay strings.  Fields the client does not know yet are ignored, so a newer
server never breaks an older client.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class JobStatus(enum.StrEnum):
    """A job's state; the last three are terminal."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the job will not change again on its own."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def parse_datetime(value: str | datetime) -> datetime:
    """Parse an ISO 8601 timestamp; a naive one is taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved annotations of a dataclass, computed once per class."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _convert(hint: Any, value: Any) -> Any:
    """Turn a JSON value into the annotated type: datetimes, enums, nested dataclasses."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, element) for element in value]
    if hint is datetime:
        return parse_datetime(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return load(hint, value)
    return value


def load(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build the dataclass ``cls`` from a JSON object, ignoring fields it does not declare."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name in data:
            values[item.name] = _convert(hints[item.name], data[item.name])
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            values[item.name] = None
    return cls(**values)


def load_page(cls: type[T], key: str, body: Mapping[str, Any]) -> Page[T]:
    """Build a ``Page`` from a list body ``{key: [...], pagination: {...}}``."""
    pagination = body.get("pagination") or {}
    items = [load(cls, item) for item in body.get(key) or []]
    return Page(
        items=items,
        page=int(pagination.get("page", 1)),
        limit=int(pagination.get("limit", len(items))),
        total=int(pagination.get("total", len(items))),
        pages=int(pagination.get("pages", 1)),
        next_after=pagination.get("next_after"),
    )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items and where it sits in the whole."""

    items: list[T]
    page: int
    limit: int
    total: int
    pages: int
    # The job list's cursor for the next page (``after``); None when this page is not full.
    next_after: str | None = None


@dataclass(frozen=True)
class Tokens:
    """An access token (and, from a login or refresh, the refresh token)."""

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_in: int | None = None
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Registered:
    """A new organization and its owner."""

    user_id: str
    organization_id: str
    message: str = ""


@dataclass(frozen=True)
class TokenInfo:
    """What ``/auth/validate`` says about the presented credentials."""

    valid: bool
    user_id: str | None
    organization_id: str
    role: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Queue:
    """A queue of an organization's project."""

    id: str
    project_id: str
    name: str
    description: str | None
    priority: int
    settings: dict[str, Any]
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class QueueStats:
    """A queue's job counts per state, broker depth and activity."""

    queue_id: str
    pending_count: int = 0
    scheduled_count: int = 0
    processing_count: int = 0
    succeeded_count: int = 0
    failed_count: int = 0
    cancelled_count: int = 0
    total_count: int = 0
    broker_depth: int | None = None
    is_active: bool = True
    last_activity: datetime | None = None
    oldest_pending_age_seconds: float | None = None


@dataclass(frozen=True)
class Job:
    """A job with its state, result or error."""

    id: str
    queue_id: str
    job_type: str
    payload: Any
    status: JobStatus
    priority: int
    max_attempts: int
    attempt_count: int
    scheduled_for: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job."""

    number: int
    status: str
    worker: str | None
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class JobStats:
    """A job's attempts with their timings."""

    job_id: str
    status: JobStatus
    attempt_count: int
    max_attempts: int
    wait_seconds: float | None
    run_seconds: float
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class ApiKey:
    """An API key (never its secret)."""

    id: str
    organization_id: str
    created_by_id: str | None
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyCreated(ApiKey):
    """A new API key with its secret ``key``, which no later answer shows again."""

    key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Worker:
    """A worker registered to the organization."""

    id: str
    project_id: str | None
    name: str
    hostname: str | None
    worker_type: str
    status: str
    capabilities: Any
    max_concurrent_jobs: int
    queues: list[str]
    drain_mode: bool
    metadata: dict[str, Any]
    last_heartbeat: datetime | None
    registered_at: datetime


@dataclass(frozen=True)
class LiveWorker:
    """A worker as the monitor sees it now (also the data of a ``worker`` event)."""

    hostname: str
    status: str
    id: str | None = None
    active: int = 0
    processed: int = 0
    failed: int = 0
    pool_size: int | None = None
    loadavg: list[float] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    last_heartbeat: datetime | None = None
    worker_type: str | None = None


@dataclass(frozen=True)
class TaskEvent:
    """A task event of the monitor (also the data of a ``task`` event on the stream)."""

    job_id: str
    queue_id: str
    job_type: str
    state: str
    timestamp: datetime
    worker: str | None = None
    runtime: float | None = None
    error: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class LiveQueue:
    """A queue as the monitor sees it now."""

    queue_id: str
    name: str
    is_active: bool
    depth: int | None = None
    consumers: int = 0
    throughput_per_minute: int = 0
    oldest_waiting_seconds: float | None = None


Event = TaskEvent | LiveWorker


class _HasId(typing.Protocol):
    @property
    def id(self) -> str: ...


def id_of(value: str | _HasId) -> str:
    """The id of a resource given as its id or as the resource itself."""
    return value if isinstance(value, str) else value.id
