"""Jobs: submit, read, list, cancel, retry and per-job statistics."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from app.celery_names import task_id
from app.db import rowcount
from app.errors import Conflict, NotFound, TaskForgeError, ValidationFailed
from app.models import AttemptStatus, Job, JobAttempt, JobStatus, Queue, utcnow
from app.services import execution
from app.services import queues as queue_service
from app.services.actors import Actor, Permission
from app.services.job_counts import count_jobs
from app.services.outbox import Dispatch, Revoke, Submitted, stage
from app.services.pagination import Page, check_page_args, paginate
from app.services.queue_cache import QUEUES
from app.services.queue_settings import QueueSettings
from app.services.validation import (
    check_datetime,
    check_json_document,
    check_range,
    parse_uuid,
    parse_uuid_field,
)
from app.services.workers import BUILTIN_JOB_TYPES, Runner, check_runnable, live_runners

JOB_TYPE_CHARS = "A-Za-z0-9_.:-"
JOB_TYPE_MAX = 100
JOB_TYPE_PATTERN = re.compile(f"^[{JOB_TYPE_CHARS}]{{1,{JOB_TYPE_MAX}}}$")
PAYLOAD_MAX_BYTES = 512 * 1024
IDEMPOTENCY_KEY_MAX = 255
# Visible ASCII, spaces inside only: what an HTTP header carries unchanged (it trims the ends).
IDEMPOTENCY_KEY_PATTERN = re.compile(rf"^[!-~](?:[ -~]{{0,{IDEMPOTENCY_KEY_MAX - 2}}}[!-~])?$")
BATCH_MAX = 1000
CURSOR_MAX = 200


def _load(session: Session, actor: Actor, job_id: str | uuid.UUID) -> Job:
    job = session.get(Job, parse_uuid(job_id, what="Job"))
    if job is None or job.organization_id != actor.organization_id:
        raise NotFound("Job not found")
    return job


def get_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Return one of the actor's jobs."""
    actor.require(Permission.JOB_READ)
    return _load(session, actor, job_id)


def _cursor(job: Job) -> str:
    """The keyset cursor of the list after ``job``: its place in the list's order."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Read a cursor ``_cursor`` made back into its ``(created_at, id)``."""
    try:
        if len(cursor) > CURSOR_MAX:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError(created)
        return created_at, uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed.field("after", "Not a cursor a job list returned.") from None


def list_jobs(
    session: Session,
    *,
    actor: Actor,
    page: int,
    limit: int,
    status: JobStatus | None = None,
    queue_id: str | uuid.UUID | None = None,
    after: str | None = None,
) -> Page[Job]:
    """List jobs newest first, each filter served by an index in this order.

    ``ix_jobs_org_created_id``, ``ix_jobs_org_status_created_id``,
    ``ix_jobs_queue_created_id``, ``ix_jobs_queue_status_created_id``; the page's
    ids are found in the index first (``paginate``'s ``key``).  The total comes
    from the summary counters, which cover every combination of these filters.

    A page number skips the earlier pages' index entries, a cost that grows
    with the page; ``after`` (a full page's ``next_after``) starts right after
    that page's last job instead, at the cost of page 1 however deep.  The total
    still counts every job matching the filters.
    """
    actor.require(Permission.JOB_READ)
    check_page_args(page, limit)
    query = select(Job)
    queue: Queue | None = None
    if queue_id is None:
        query = query.where(Job.organization_id == actor.organization_id)
    else:
        # A job is in its queue's organization, so once the queue is the actor's,
        # its id alone selects the jobs off the queue indexes.
        # Another organization's queue lists nothing, like a missing one.
        queue = session.get(Queue, parse_uuid_field(queue_id, "queue_id"))
        if queue is None or queue.organization_id != actor.organization_id:
            return Page(items=[], page=page, limit=limit, total=0)
        query = query.where(Job.queue_id == queue.id)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        if page != 1:
            raise ValidationFailed.field("page", "A list that starts after a cursor has no page.")
        # A row comparison: both engines read it as a range of the index.
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(*_after(after)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc())
    counts = count_jobs(
        session, actor.organization_id, queue_id=queue.id if queue else None, status=status
    )
    found = paginate(session, query, page=page, limit=limit, key=Job.id, total=sum(counts.values()))
    if len(found.items) < limit:
        return found
    return dataclasses.replace(found, next_after=_cursor(found.items[-1]))


def job_counts(session: Session, *, actor: Actor) -> dict[JobStatus, int]:
    """Count the organization's jobs per status, exactly, off the summary counters."""
    actor.require(Permission.JOB_READ)
    return count_jobs(session, actor.organization_id)


def _resolve_queue(
    session: Session, actor: Actor, queue_id: str | uuid.UUID | None, queue_name: str | None
) -> Queue:
    if queue_id is not None:
        # Read-only from here on: a cached queue's JSON columns are shared.
        queue = QUEUES.get(session, parse_uuid_field(queue_id, "queue_id"), actor.epoch)
        if queue is None or queue.organization_id != actor.organization_id:
            raise NotFound("Queue not found")
        return queue
    if queue_name is not None:
        return queue_service.get_queue_by_name(session, actor=actor, name=queue_name)
    raise ValidationFailed(
        "Either queue_id or queue_name is required",
        errors={"queue_id": ["Either queue_id or queue_name is required."]},
    )


def _check_job_type(job_type: str) -> str:
    if not JOB_TYPE_PATTERN.match(job_type):
        raise ValidationFailed.field(
            "job_type", "1-100 characters of letters, digits, '_', '.', ':' or '-'."
        )
    return job_type


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise ValidationFailed.field(
            "idempotency_key",
            f"1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters (spaces only between them).",
        )
    return key


def _existing_for_keys(session: Session, actor: Actor, keys: Sequence[str]) -> dict[str, Job]:
    if not keys:
        return {}
    jobs = session.scalars(
        select(Job).where(
            Job.organization_id == actor.organization_id, Job.idempotency_key.in_(keys)
        )
    )
    return {job.idempotency_key: job for job in jobs if job.idempotency_key is not None}


@dataclass
class _Batch:
    """What the jobs of one submit share: their queues and the queues' live workers."""

    actor: Actor
    now: datetime
    queues: dict[tuple[str, str], Queue] = field(default_factory=dict)
    runners: dict[uuid.UUID, list[Runner]] = field(default_factory=dict)

    def queue(
        self, session: Session, queue_id: str | uuid.UUID | None, queue_name: str | None
    ) -> Queue:
        """Resolve a job's queue once per batch."""
        cache_key = ("id", str(queue_id)) if queue_id is not None else ("name", str(queue_name))
        if cache_key not in self.queues:
            self.queues[cache_key] = _resolve_queue(session, self.actor, queue_id, queue_name)
        return self.queues[cache_key]

    def check_runnable(self, session: Session, queue: Queue, job_type: str) -> None:
        """Refuse a type no live worker of the queue has, reading the workers once per queue."""
        if job_type in BUILTIN_JOB_TYPES:
            return
        if queue.id not in self.runners:
            self.runners[queue.id] = live_runners(session, celery_queue=queue.celery_queue)
        check_runnable(self.runners[queue.id], job_type)


def _new_job(
    session: Session,
    batch: _Batch,
    *,
    job_type: str,
    payload: Any = None,
    queue_id: str | uuid.UUID | None = None,
    queue_name: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    scheduled_for: datetime | None = None,
    idempotency_key: str | None = None,
) -> tuple[Job, Queue]:
    """Check one job's input and build its row (not yet stored)."""
    queue = batch.queue(session, queue_id, queue_name)
    job_type = _check_job_type(job_type)
    batch.check_runnable(session, queue, job_type)
    check_json_document(payload, "payload", max_bytes=PAYLOAD_MAX_BYTES)
    check_range(priority, "priority", 0, 9)
    if max_attempts is None:
        max_attempts = QueueSettings.from_stored(queue.settings).max_attempts
    check_range(max_attempts, "max_attempts", 1, 10)
    if scheduled_for is not None:
        scheduled_for = check_datetime(scheduled_for, "scheduled_for")
    future = scheduled_for is not None and scheduled_for > batch.now
    job = _unsaved_job(
        id=uuid.uuid4(),
        organization_id=batch.actor.organization_id,
        queue_id=queue.id,
        job_type=job_type,
        payload=payload,
        status=JobStatus.SCHEDULED if future else JobStatus.PENDING,
        priority=priority,
        max_attempts=max_attempts,
        attempt_count=0,
        dispatch_generation=0,
        scheduled_for=scheduled_for,
        started_at=None,
        completed_at=None,
        result=None,
        error=None,
        worker_name=None,
        available_at=scheduled_for if future else None,
        published_at=None,
        lease_expires_at=None,
        held_since=None,
        idempotency_key=idempotency_key,
        redriven_from=None,
        redrive_id=None,
        created_at=batch.now,
        updated_at=batch.now,
    )
    return job, queue


_JOB_MANAGER = Job.__mapper__.class_manager


def _unsaved_job(**columns: Any) -> Job:
    """Build a ``Job`` from every one of its column values, as the ORM builds a loaded row.

    ``Job(**columns)`` sets each attribute through its instrumentation and records
    it as a change that ``_store`` discards right away (the row goes in by a Core
    INSERT): that cost a tenth of a bulk submit's CPU.
    """
    job: Job = _JOB_MANAGER.new_instance()
    job.__dict__.update(columns)
    return job


_JOBS: Table = Job.__table__  # type: ignore[assignment]
_INSERTED_COLUMNS = tuple(column.key for column in _JOBS.columns)
_UNIQUE_KEY = [_JOBS.c.organization_id, _JOBS.c.idempotency_key]
# PostgreSQL: the columns whose values differ between the jobs of a batch go as
# one array parameter each, unnested into rows by the server; the others hold
# one value for the whole batch (its organization and time, a new job's zero
# counters and empty run fields).  A multi-row VALUES of 500 jobs has 12,500
# parameters, and psycopg parses such a statement's text again on every
# execution (it caches only statements of at most 50 parameters): that parse
# cost more than the INSERT itself.  This one has 25, and it is still one
# statement, so the counters' statement trigger appends one delta per key.
_PER_JOB = (
    "id",
    "queue_id",
    "job_type",
    "payload",
    "status",
    "priority",
    "max_attempts",
    "scheduled_for",
    "available_at",
    "idempotency_key",
)
_PER_BATCH = tuple(name for name in _INSERTED_COLUMNS if name not in _PER_JOB)
# dimensions=1: a payload that is a JSON array is one element, not a second dimension.
_NEW_ROWS = (
    func.unnest(
        *(
            bindparam(name, type_=postgresql.ARRAY(_JOBS.c[name].type, dimensions=1))
            for name in _PER_JOB
        )
    )
    .table_valued(*_PER_JOB)
    .render_derived(name="new_jobs")
)
_INSERT_POSTGRESQL = (
    postgresql.insert(_JOBS)
    .from_select(
        list(_JOBS.columns),
        select(
            *(
                _NEW_ROWS.c[column.key]
                if column.key in _PER_JOB
                else bindparam(column.key, type_=column.type)
                for column in _JOBS.columns
            )
        ),
    )
    .on_conflict_do_nothing(index_elements=_UNIQUE_KEY)
    .returning(_JOBS.c.id)
)
# One job (a single submit): plain VALUES, 25 parameters, which psycopg prepares once
# per connection; arrays to unnest cost it 0.1-0.2 ms more per submit (measured).
_INSERT_POSTGRESQL_ONE = (
    postgresql.insert(_JOBS)
    .on_conflict_do_nothing(index_elements=_UNIQUE_KEY)
    .returning(_JOBS.c.id)
)
_INSERT_SQLITE = (
    sqlite.insert(_JOBS).on_conflict_do_nothing(index_elements=_UNIQUE_KEY).returning(_JOBS.c.id)
)


def _store(session: Session, actor: Actor, jobs: Sequence[tuple[Job, Queue]]) -> list[Job]:
    """INSERT ``jobs`` in one statement, stage their dispatches; return what each one is now.

    A job whose idempotency key another transaction stored meanwhile is not
    inserted (``ON CONFLICT DO NOTHING`` on the unique key, so of concurrent
    submits with one key exactly one inserts); the winner's job takes its place.
    A stored job joins the session as if loaded, so callers see no difference
    from an ORM insert, without paying for the unit of work.
    """
    # Every column's value is in the job's __dict__ (``_unsaved_job``).
    rows = [vars(job) for job, _ in jobs]
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    if postgres and len(rows) > 1:
        shared = {name: rows[0][name] for name in _PER_BATCH}
        if any(row[name] != value for row in rows for name, value in shared.items()):
            raise ValueError("The jobs of one INSERT must share every column but _PER_JOB's")
        columns = {name: [row[name] for row in rows] for name in _PER_JOB}
        inserted = set(connection.execute(_INSERT_POSTGRESQL, shared | columns).scalars())
    else:
        # A Core executemany: SQLAlchemy's "insertmanyvalues" sends the rows as one
        # multi-row INSERT (per 1,000 rows), and the statement compiles once per process.
        values = [{name: row[name] for name in _INSERTED_COLUMNS} for row in rows]
        statement = _INSERT_POSTGRESQL_ONE if postgres else _INSERT_SQLITE
        inserted = set(connection.execute(statement, values).scalars())
    lost = [job.idempotency_key for job, _ in jobs if job.id not in inserted]
    winners = _existing_for_keys(session, actor, [key for key in lost if key is not None])
    stored: list[Job] = []
    for job, queue in jobs:
        if job.id not in inserted:
            if job.idempotency_key not in winners:
                raise Conflict("The job could not be stored; submit it again")
            stored.append(winners[job.idempotency_key])
            continue
        make_transient_to_detached(job)
        session.add(job)
        stage(session, Submitted(queue.id))
        if queue.is_active:
            # A paused queue's jobs stay unpublished until resume publishes them.
            stage(session, Dispatch.for_job(job, QueueSettings.from_stored(queue.settings)))
        stored.append(job)
    return stored


def submit_job(
    session: Session,
    *,
    actor: Actor,
    job_type: str,
    payload: Any = None,
    queue_id: str | uuid.UUID | None = None,
    queue_name: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    scheduled_for: datetime | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Store a job and stage its dispatch; the same idempotency key returns the same job.

    A job type that none of the queue's live workers has a handler for, when
    they all advertised theirs, is refused.
    """
    actor.require(Permission.JOB_WRITE)
    idempotency_key = _check_idempotency_key(idempotency_key)
    if idempotency_key is not None:
        existing = _existing_for_keys(session, actor, [idempotency_key])
        if idempotency_key in existing:
            return existing[idempotency_key]
    new = _new_job(
        session,
        _Batch(actor, utcnow()),
        job_type=job_type,
        payload=payload,
        queue_id=queue_id,
        queue_name=queue_name,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_for=scheduled_for,
        idempotency_key=idempotency_key,
    )
    return _store(session, actor, [new])[0]


def submit_jobs(session: Session, *, actor: Actor, jobs: Sequence[Mapping[str, Any]]) -> list[Job]:
    """Store 1 to ``BATCH_MAX`` jobs (``submit_job`` keyword sets) all at once, or none.

    Every job is checked before any is stored; the bad ones are reported
    together, each field as ``jobs[i].<field>``.  A job whose ``idempotency_key``
    was used before returns that job, as ``submit_job`` does.  The new rows go
    in with one INSERT and their messages leave in one pipelined broker write
    after the commit.
    """
    actor.require(Permission.JOB_WRITE)
    if not 1 <= len(jobs) <= BATCH_MAX:
        raise ValidationFailed.field("jobs", f"Send between 1 and {BATCH_MAX} jobs.")
    errors: dict[str, list[str]] = {}
    messages: list[str] = []

    def refuse(index: int, exc: ValidationFailed) -> None:
        messages.append(f"jobs[{index}]: {exc.message}")
        for name, msgs in exc.errors.items():
            errors[f"jobs[{index}].{name}"] = msgs

    keys: list[str | None] = []
    first_use: dict[str, int] = {}
    for index, spec in enumerate(jobs):
        try:
            key = _check_idempotency_key(spec.get("idempotency_key"))
            if key is not None and key in first_use:
                raise ValidationFailed.field(
                    "idempotency_key", f"Also the key of jobs[{first_use[key]}] of this batch."
                )
        except ValidationFailed as exc:
            refuse(index, exc)
            key = None
        if key is not None:
            first_use[key] = index
        keys.append(key)
    existing = _existing_for_keys(session, actor, list(first_use))
    batch = _Batch(actor, utcnow())
    new: list[tuple[Job, Queue]] = []
    for index, spec in enumerate(jobs):
        if keys[index] in existing or f"jobs[{index}].idempotency_key" in errors:
            continue
        try:
            new.append(_new_job(session, batch, **{**spec, "idempotency_key": keys[index]}))
        except ValidationFailed as exc:
            refuse(index, exc)
        except TaskForgeError as exc:
            prefixed = {f"jobs[{index}].{name}": msgs for name, msgs in exc.errors.items()}
            raise type(exc)(f"jobs[{index}]: {exc.message}", errors=prefixed) from exc
    if errors:
        raise ValidationFailed("; ".join(messages), errors=errors)
    stored = iter(_store(session, actor, new) if new else [])
    return [existing[key] if key is not None and key in existing else next(stored) for key in keys]


def cancel_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Cancel a pending, scheduled or running job; a running one is stopped."""
    job = get_job(session, actor=actor, job_id=job_id)
    actor.require(Permission.JOB_WRITE)
    # Compare-and-sets: a worker claiming or finishing the job at the same moment,
    # or a concurrent cancel, wins or loses atomically, never both.
    now = utcnow()
    cancelled = {"status": JobStatus.CANCELLED, "completed_at": now, "updated_at": now}
    waiting = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(execution.CLAIMABLE))
        .values(**cancelled)
        .returning(Job.attempt_count),
        execution_options={"synchronize_session": False},
    ).scalar_one_or_none()
    if waiting is not None:
        stage(session, Revoke(task_id(job.id, waiting)))
    else:
        running = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.PROCESSING)
            .values(lease_expires_at=None, **cancelled)
            .returning(Job.attempt_count),
            execution_options={"synchronize_session": False},
        ).scalar_one_or_none()
        if running is not None:
            execution.finish_attempt(
                session, job.id, running, AttemptStatus.CANCELLED, now, execution.CANCELLED_ERROR
            )
            # The attempt's message carried the attempt count it was published for.
            stage(session, Revoke(task_id(job.id, running - 1), terminate=True))
    session.refresh(job)
    if waiting is None and running is None:
        raise Conflict(f"A {job.status.value} job cannot be cancelled")
    return job


def retry_job(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> Job:
    """Queue a failed job again with a fresh attempt budget, keeping its history."""
    job = get_job(session, actor=actor, job_id=job_id)
    actor.require(Permission.JOB_WRITE)
    # One compare-and-set: of concurrent retries exactly one moves the job out of
    # ``failed``; a retry that read the job before another one restarted it
    # changes nothing (it must not reset a running or finished attempt).
    changed = rowcount(
        session,
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.FAILED)
        .values(
            # A fresh budget: max_attempts more attempts on top of those already made.
            max_attempts=Job.attempt_count + Job.max_attempts,
            status=JobStatus.PENDING,
            completed_at=None,
            error=None,
            result=None,
            published_at=None,
            held_since=None,
            dispatch_generation=Job.dispatch_generation + 1,
            available_at=None,
            updated_at=utcnow(),
        ),
    )
    session.refresh(job)
    if not changed:
        raise Conflict(f"Only failed jobs can be retried; this one is {job.status.value}")
    queue = session.get(Queue, job.queue_id)
    assert queue is not None
    if queue.is_active:
        stage(session, Dispatch.for_job(job, QueueSettings.from_stored(queue.settings)))
    return job


@dataclass(frozen=True)
class JobStats:
    """A job's attempts with their timings."""

    job: Job
    attempts: Sequence[JobAttempt]

    @property
    def wait_seconds(self) -> float | None:
        """Time from becoming due to the first start."""
        if self.job.started_at is None and not self.attempts:
            return None
        first_start = self.attempts[0].started_at if self.attempts else self.job.started_at
        assert first_start is not None
        due = max(self.job.created_at, self.job.scheduled_for or self.job.created_at)
        return max(0.0, (first_start - due).total_seconds())

    @property
    def run_seconds(self) -> float:
        """Total time spent running, over all finished attempts."""
        return sum(
            (a.finished_at - a.started_at).total_seconds()
            for a in self.attempts
            if a.finished_at is not None
        )


def job_stats(session: Session, *, actor: Actor, job_id: str | uuid.UUID) -> JobStats:
    """Return a job's attempts in order (served by the unique ``(job_id, number)`` index)."""
    job = get_job(session, actor=actor, job_id=job_id)
    attempts = session.scalars(
        select(JobAttempt).where(JobAttempt.job_id == job.id).order_by(JobAttempt.number)
    ).all()
    return JobStats(job=job, attempts=attempts)
