"""Queue policies: dispatch rate and concurrency limits, enforced across every worker.

A queue's ``policy`` (and, inside it, one per job type: ``job_types``) may set
``max_dispatches_per_second`` with a ``burst``, and ``max_concurrent_jobs``.  Before a
worker claims a job it asks :func:`hold_back`: one Lua script in Redis takes a token
from every bucket that applies and a slot in every semaphore that applies, or
nothing.  A job held back stays ``pending`` and its message is sent again with an
ETA (the next token's time, or :data:`CAP_RETRY` for a full semaphore);
``explain`` names the limit.

The semaphores are sorted sets of ``<job id>:<attempt>`` members, scored by
admission time.  A member is never released by its holder: when a semaphore is
full, its members whose attempt ended in SQL (finished, or its lease ran out
because the worker died) are removed, so a dead worker's slot comes back without
any cleanup of its own.  The policy is read from SQL on every message, so a change
takes effect at the next message, without restarting workers.

Hand-written on Redis rather than a library: the budgets must be global (all
workers), atomic across a queue's and a job type's limits at once, and tied to
SQL's view of which attempts still run; Celery's ``rate_limit`` is per worker and
per task name (every tenant at once), and ``limits`` spends one limit per round trip.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

import redis
from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session

from app.db import get_engine, session_scope
from app.errors import ValidationFailed
from app.models import Job, JobStatus, Queue, utcnow
from app.redis_client import connect
from app.services import audit
from app.services.actors import Actor, Permission
from app.services.audit import AuditAction
from app.services.jobs import JOB_TYPE_PATTERN
from app.services.outbox import Dispatch, stage
from app.services.queue_settings import QueueSettings
from app.services.queues import get_queue
from app.services.validation import check_json_text

logger = logging.getLogger(__name__)

KEY_PREFIX = "taskforge:policy"
LIMIT_KEYS = ("max_dispatches_per_second", "burst", "max_concurrent_jobs")
RATE_MAX = 10_000.0
CONCURRENCY_MAX = 10_000
JOB_TYPES_MAX = 100
# A job held back by a full semaphore asks again after this long.
CAP_RETRY = timedelta(seconds=1)
# An admitted attempt not claimed within this long (its claim failed) frees its slot.
CLAIM_GRACE = timedelta(seconds=10)
# A bucket left alone this long is dropped (it would be full again by then anyway).
BUCKET_TTL_SECONDS = 3600

# KEYS: the buckets, then the semaphores.  ARGV: member, number of buckets, the
# buckets' time to live, each bucket's rate and burst, each semaphore's size.
# Returns {1} when admitted, else {0, seconds until the next token (0 when only a
# semaphore is full), index of the full semaphore (0 when none)}.  Time is Redis's,
# the same for every worker.
_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local member = ARGV[1]
local buckets = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local arg = 4
local tokens = {}
local wait = 0
for i = 1, buckets do
  local rate = tonumber(ARGV[arg])
  local burst = tonumber(ARGV[arg + 1])
  arg = arg + 2
  local stored = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local have = tonumber(stored[1]) or burst
  local since = tonumber(stored[2]) or now
  have = math.min(burst, have + math.max(0, now - since) * rate)
  tokens[i] = have
  if have < 1 then wait = math.max(wait, (1 - have) / rate) end
end
local full = 0
for j = buckets + 1, #KEYS do
  local size = tonumber(ARGV[arg])
  arg = arg + 1
  if not redis.call('ZSCORE', KEYS[j], member) and redis.call('ZCARD', KEYS[j]) >= size then
    full = j - buckets
  end
end
if wait > 0 or full > 0 then
  return {0, tostring(wait), full}
end
for i = 1, buckets do
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - 1), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[i], ttl)
end
for j = buckets + 1, #KEYS do
  redis.call('ZADD', KEYS[j], now, member)
end
return {1}
"""

# KEYS: one bucket.  ARGV: rate, burst.  Returns the tokens it holds now.
_PEEK = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local burst = tonumber(ARGV[2])
local have = tonumber(stored[1]) or burst
local since = tonumber(stored[2]) or now
return tostring(math.min(burst, have + math.max(0, now - since) * tonumber(ARGV[1])))
"""


@dataclass(frozen=True)
class Limits:
    """The limits of a queue, or of one job type in it; None: unlimited."""

    max_dispatches_per_second: float | None = None
    burst: int | None = None
    max_concurrent_jobs: int | None = None

    @property
    def bucket_size(self) -> float:
        """How many dispatches may go at once after a quiet spell (at least one)."""
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, self.max_dispatches_per_second or 1.0)


@dataclass(frozen=True)
class Policy:
    """A queue's limits and its job types' limits."""

    queue: Limits
    job_types: dict[str, Limits]

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> Policy:
        """The policy a queue stores (None: no limits)."""
        stored = stored or {}
        return cls(
            queue=Limits(**{k: stored[k] for k in LIMIT_KEYS if k in stored}),
            job_types={
                given["job_type"]: Limits(**{k: given[k] for k in LIMIT_KEYS if k in given})
                for given in stored.get("job_types") or []
            },
        )

    def scopes(self, job_type: str) -> list[tuple[str, Limits]]:
        """The limits that apply to a job of ``job_type``, each with its scope name."""
        found = [("queue", self.queue)]
        if job_type in self.job_types:
            found.append((f"type:{job_type}", self.job_types[job_type]))
        return found


def _check_limits(given: Any, where: str, extra: str) -> dict[str, Any]:
    """Check one set of limits; ``extra`` names the one other key it may hold."""
    if not isinstance(given, dict):
        raise ValidationFailed.field(where, "Must be an object.")
    errors: dict[str, list[str]] = {}
    for key, value in given.items():
        field = f"{where}.{key}"
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "max_dispatches_per_second":
            if not number or not 0 < value <= RATE_MAX:
                errors[field] = [f"Must be a number above 0 and at most {RATE_MAX:g}."]
        elif key in ("burst", "max_concurrent_jobs"):
            if not isinstance(value, int) or isinstance(value, bool):
                errors[field] = ["Must be an integer."]
            elif not 1 <= value <= CONCURRENCY_MAX:
                errors[field] = [f"Must be between 1 and {CONCURRENCY_MAX}."]
        elif key != extra:
            errors[field] = ["Unknown setting."]
    if "burst" in given and "max_dispatches_per_second" not in given:
        errors[f"{where}.burst"] = ["Needs max_dispatches_per_second."]
    if errors:
        raise ValidationFailed("Invalid queue policy", errors=errors)
    return given


def check_policy(policy: Any) -> dict[str, Any]:
    """Validate a policy as a client sends it; return it as stored."""
    check_json_text(policy, "policy")
    _check_limits(policy, "policy", "job_types")
    job_types = policy.get("job_types", [])
    if not isinstance(job_types, list) or len(job_types) > JOB_TYPES_MAX:
        raise ValidationFailed.field(
            "policy.job_types", f"Must be a list of at most {JOB_TYPES_MAX} job types' limits."
        )
    seen: set[str] = set()
    for index, limits in enumerate(job_types):
        where = f"policy.job_types[{index}]"
        _check_limits(limits, where, "job_type")
        name = limits.get("job_type")
        if not isinstance(name, str) or not JOB_TYPE_PATTERN.match(name):
            raise ValidationFailed.field(
                f"{where}.job_type", "1-100 characters of letters, digits, '_', '.', ':' or '-'."
            )
        if name in seen:
            raise ValidationFailed.field(f"{where}.job_type", f"'{name}' is listed twice.")
        seen.add(name)
    return dict(policy)


def get_policy(session: Session, *, actor: Actor, queue_id: str | uuid.UUID) -> dict[str, Any]:
    """Return a queue's policy as stored ({} when it has none)."""
    return get_queue(session, actor=actor, queue_id=queue_id).policy or {}


def set_policy(
    session: Session, *, actor: Actor, queue_id: str | uuid.UUID, policy: Any
) -> dict[str, Any]:
    """Replace a queue's policy (admins); workers apply it from their next message."""
    queue = get_queue(session, actor=actor, queue_id=queue_id)
    actor.require(Permission.ORG_ADMIN)
    stored = check_policy(policy)
    previous = queue.policy or {}
    queue.policy = stored or None
    session.flush()
    audit.record(
        session,
        actor=actor,
        organization_id=queue.organization_id,
        action=AuditAction.POLICY_CHANGE,
        target_type="queue",
        target_id=queue.id,
        details={"before": previous, "after": stored},
    )
    return stored


class PolicyStore:
    """The Redis side: buckets and semaphores, shared by every worker."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_ADMIT)
        self._peek = client.register_script(_PEEK)

    @classmethod
    def from_url(cls, url: str, *, sentinel_master: str | None = None) -> PolicyStore:
        """Connect to the Redis at ``url`` (or the master Sentinels name)."""
        return cls(connect(url, sentinel_master=sentinel_master))

    @staticmethod
    def key(queue_id: uuid.UUID, scope: str, kind: str) -> str:
        """The Redis key of one bucket or semaphore."""
        return f"{KEY_PREFIX}:{queue_id}:{scope}:{kind}"

    def admit(
        self, queue_id: uuid.UUID, member: str, scopes: list[tuple[str, Limits]]
    ) -> tuple[bool, float, str | None]:
        """Take a token from every bucket and a slot in every semaphore, or nothing.

        Returns whether admitted, the seconds until the next token, and the scope
        of a full semaphore.
        """
        rated = [(s, lim) for s, lim in scopes if lim.max_dispatches_per_second]
        capped = [(s, lim) for s, lim in scopes if lim.max_concurrent_jobs]
        keys = [self.key(queue_id, s, "bucket") for s, _ in rated]
        keys += [self.key(queue_id, s, "running") for s, _ in capped]
        args: list[Any] = [member, len(rated), BUCKET_TTL_SECONDS]
        for _, lim in rated:
            args += [lim.max_dispatches_per_second, lim.bucket_size]
        args += [lim.max_concurrent_jobs for _, lim in capped]
        result = self._admit(keys=keys, args=args)
        if int(result[0]) == 1:
            return True, 0.0, None
        full = int(result[2])
        return False, float(result[1]), capped[full - 1][0] if full else None

    def members(self, queue_id: uuid.UUID, scope: str) -> tuple[dict[str, float], float]:
        """The attempts holding a slot of one semaphore, with their admission times; Redis's now."""
        raw = cast(
            list[tuple[bytes, float]],
            self.client.zrange(self.key(queue_id, scope, "running"), 0, -1, withscores=True),
        )
        seconds, micros = cast(tuple[int, int], self.client.time())
        members = {m.decode(): float(t) for m, t in raw}
        return members, seconds + micros / 1_000_000

    def release(self, queue_id: uuid.UUID, scope: str, members: list[str]) -> None:
        """Give back the slots of attempts that no longer run."""
        if members:
            self.client.zrem(self.key(queue_id, scope, "running"), *members)

    def tokens(self, queue_id: uuid.UUID, scope: str, limits: Limits) -> float:
        """How many tokens one bucket holds now."""
        assert limits.max_dispatches_per_second is not None
        return float(
            self._peek(
                keys=[self.key(queue_id, scope, "bucket")],
                args=[limits.max_dispatches_per_second, limits.bucket_size],
            )
        )


_store: PolicyStore | None = None


def set_store(store: PolicyStore | None) -> None:
    """Install the process's policy store (the composition root does)."""
    global _store
    _store = store


def _parse_member(member: str) -> tuple[uuid.UUID, int] | None:
    job_id, _, attempt = member.rpartition(":")
    try:
        return uuid.UUID(job_id), int(attempt)
    except ValueError:
        return None


def _stale(session: Session, members: dict[str, float], now: float) -> list[str]:
    """The members whose attempt does not hold its slot any more.

    A member holds it from its admission until its attempt ends: while the job
    still waits for that attempt (admitted, about to be claimed; for at most
    :data:`CLAIM_GRACE`, after which the claim has failed), and while the attempt
    is processing under a live lease.  Finished, superseded or lost attempts
    (their worker died and the lease ran out) give it back.
    """
    parsed = {member: _parse_member(member) for member in members}
    ids = [p[0] for p in parsed.values() if p is not None]
    rows = {
        row.id: row
        for row in session.execute(
            select(Job.id, Job.attempt_count, Job.status, Job.lease_expires_at).where(
                Job.id.in_(ids)
            )
        )
    }
    sql_now = utcnow()
    stale = []
    for member, found in parsed.items():
        row = rows.get(found[0]) if found else None
        if row is None or found is None:
            stale.append(member)
            continue
        attempt = found[1]
        claiming = (
            row.attempt_count == attempt - 1
            and row.status in (JobStatus.PENDING, JobStatus.SCHEDULED)
            and now - members[member] < CLAIM_GRACE.total_seconds()
        )
        running = (
            row.attempt_count == attempt
            and row.status is JobStatus.PROCESSING
            and row.lease_expires_at is not None
            and row.lease_expires_at > sql_now
        )
        if not (claiming or running):
            stale.append(member)
    return stale


_jobs = cast(Table, Job.__table__)
_queues = cast(Table, Queue.__table__)
_POLICY = (
    select(
        _queues.c.policy,
        _queues.c.is_active,
        _jobs.c.job_type,
        _jobs.c.queue_id,
        _jobs.c.attempt_count,
        _jobs.c.status,
        _jobs.c.available_at,
    )
    .join(_queues, _queues.c.id == _jobs.c.queue_id)
    .where(_jobs.c.id == bindparam("p_id"))
)


def hold_back(database_url: str, job_id: uuid.UUID, attempt: int) -> bool:
    """Tell whether the queue's policy holds the job back now; if so, ask again later.

    Called by the worker before it claims attempt ``attempt + 1``.  A held-back job
    stays pending, and its message is sent again for when a token or slot is due.
    A Redis outage lets jobs through rather than stopping the queue.
    """
    store = _store
    if store is None:
        return False
    # The hot path of every message: a pre-built Core statement on a plain
    # connection (a session per message cost as much again).
    with get_engine(database_url).connect() as connection:
        row = connection.execute(_POLICY, {"p_id": job_id}).one_or_none()
    if row is None or not row.policy:
        return False
    claimable = (
        row.is_active
        and row.attempt_count == attempt
        and row.status in (JobStatus.PENDING, JobStatus.SCHEDULED)
        and (row.available_at is None or row.available_at <= utcnow())
    )
    if not claimable:
        # The claim drops this message: it must spend no token and hold no slot.
        return False
    with session_scope(database_url) as session:
        scopes = [
            (scope, limits)
            for scope, limits in Policy.from_stored(row.policy).scopes(row.job_type)
            if limits.max_dispatches_per_second or limits.max_concurrent_jobs
        ]
        if not scopes:
            return False
        member = f"{job_id}:{attempt + 1}"
        try:
            admitted, wait, full = store.admit(row.queue_id, member, scopes)
            if full is not None:
                # Slots of attempts that ended (or whose worker died) come back here.
                stale = _stale(session, *store.members(row.queue_id, full))
                if stale:
                    store.release(row.queue_id, full, stale)
                    admitted, wait, full = store.admit(row.queue_id, member, scopes)
        except redis.RedisError:
            logger.warning("policy store unavailable; job %s runs unlimited", job_id)
            return False
        if admitted:
            return False
        _send_again(session, job_id, attempt, wait if full is None else CAP_RETRY.total_seconds())
        return True


def _send_again(session: Session, job_id: uuid.UUID, attempt: int, delay: float) -> None:
    job = session.scalar(
        select(Job)
        .join(Queue, Queue.id == Job.queue_id)
        .where(
            Job.id == job_id,
            Job.attempt_count == attempt,
            Job.status.in_([JobStatus.PENDING, JobStatus.SCHEDULED]),
            Queue.is_active.is_(True),
        )
    )
    if job is None:
        return
    queue = session.get(Queue, job.queue_id)
    assert queue is not None
    due = utcnow() + timedelta(seconds=max(delay, 0.05))
    stage(
        session, replace(Dispatch.for_job(job, QueueSettings.from_stored(queue.settings)), eta=due)
    )


@dataclass(frozen=True)
class Held:
    """Why a queue's policy holds a job back now."""

    code: str
    message: str
    details: dict[str, Any]


def why_held(session: Session, job: Job, queue: Queue) -> list[Held]:
    """The limits of the job's queue that hold it back now, with their numbers."""
    found: list[Held] = []
    for scope, limits in Policy.from_stored(queue.policy).scopes(job.job_type):
        what = "queue" if scope == "queue" else f"job type '{job.job_type}'"
        if limits.max_concurrent_jobs:
            query = select(func.count()).where(
                Job.queue_id == queue.id, Job.status == JobStatus.PROCESSING
            )
            if scope != "queue":
                query = query.where(Job.job_type == job.job_type)
            running = int(session.scalar(query) or 0)
            if running >= limits.max_concurrent_jobs:
                found.append(
                    Held(
                        "concurrency_cap",
                        f"The {what} runs {running} of at most {limits.max_concurrent_jobs} "
                        "jobs at once.",
                        {"scope": scope, "running": running, "max": limits.max_concurrent_jobs},
                    )
                )
        if limits.max_dispatches_per_second and _store is not None:
            try:
                tokens = _store.tokens(queue.id, scope, limits)
            except redis.RedisError:
                continue
            if tokens < 1:
                wait = (1 - tokens) / limits.max_dispatches_per_second
                at = utcnow() + timedelta(seconds=wait)
                found.append(
                    Held(
                        "rate_limited",
                        f"The {what} may start {limits.max_dispatches_per_second:g} jobs per "
                        f"second; the next token comes at {at.isoformat()}.",
                        {
                            "scope": scope,
                            "max_per_second": limits.max_dispatches_per_second,
                            "burst": limits.bucket_size,
                            "next_token_at": at.isoformat(),
                            "in_seconds": round(wait, 3),
                        },
                    )
                )
    return found
