"""Request limits: one policy, and one Redis round trip per call, for REST and gRPC alike.

Every call spends from up to two budgets, in fixed windows kept in Redis:

- the platform's per-identity limit (``TASKFORGE_RATE_LIMIT``) on the bucket of the
  API key (``key:<id>``) or user (``user:<id>``) its credentials verify as, else of the
  client address (``ip:<address>``), so invented credentials never open a fresh bucket;
- when the organization set ``rate_limit``, that limit on the organization's one bucket
  (``org:<id>``), shared by all its users and keys over both edges.  An organization
  can so tighten what its callers get in total, never loosen the per-identity limit.

A call either spends its cost (one request, or one per job of a batch submit) from
every budget or, when one is used up, from none:
a refused call does not eat into the organization's budget.  ``limits`` parses the
limits and names the windows; its strategies spend one limit per round trip, so the
spend is a short Lua script (the shape of the one ``limits`` runs per limit) over all
the call's windows at once.  A Redis outage lets calls through rather than failing them.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from limits import RateLimitItem, parse, parse_many

from app.errors import Unavailable, ValidationFailed
from app.redis_client import connect
from app.services.actors import Actor

logger = logging.getLogger(__name__)

ORG_RATE_LIMIT_SETTING = "rate_limit"
RATE_LIMIT_MAX_CHARS = 64
KEY_PREFIX = "taskforge:ratelimit"

# KEYS: the guard's keys (the actor epoch, then blocklist entries; none without a
# guard), then the windows' counters.  ARGV: the number of guard keys, the epoch the
# caller's actor was cached under, the call's cost, then each window's amount and
# length in seconds.  Returns {-1} when a blocklist entry exists, {-2, epoch} when the
# epoch moved (nothing is spent in either case), else the index of the window that
# refused (0: none) and each counter with its remaining milliseconds.
_SPEND = """
local guards = tonumber(ARGV[1])
if guards > 0 then
  for i = 2, guards do
    if redis.call('exists', KEYS[i]) == 1 then return {-1} end
  end
  local epoch = redis.call('get', KEYS[1])
  if epoch ~= ARGV[2] then return {-2, epoch} end
end
local cost = tonumber(ARGV[3])
local windows = #KEYS - guards
local refused = 0
for i = 1, windows do
  if tonumber(redis.call('get', KEYS[guards + i]) or '0') + cost > tonumber(ARGV[2 + 2 * i]) then
    refused = i
    break
  end
end
local result = {refused}
for i = 1, windows do
  local key = KEYS[guards + i]
  local count
  if refused == 0 then
    count = redis.call('incrby', key, cost)
    if count == cost then redis.call('expire', key, ARGV[3 + 2 * i]) end
  else
    count = tonumber(redis.call('get', key) or '0')
  end
  table.insert(result, count)
  table.insert(result, redis.call('pttl', key))
end
return result
"""
_REVOKED, _EPOCH_MOVED = -1, -2


def check_rate_limit(value: Any) -> str:
    """Validate an organization's ``rate_limit`` setting, e.g. ``"600 per minute"``."""
    if not isinstance(value, str) or not 0 < len(value) <= RATE_LIMIT_MAX_CHARS:
        raise ValueError(f"Give a string of 1-{RATE_LIMIT_MAX_CHARS} characters.")
    if parse(value).amount < 1:
        raise ValueError("Allow at least one request.")
    return value


def check_organization_settings(settings: dict[str, Any]) -> None:
    """Reject organization settings whose ``rate_limit`` is not a limit."""
    if ORG_RATE_LIMIT_SETTING not in settings:
        return
    try:
        check_rate_limit(settings[ORG_RATE_LIMIT_SETTING])
    except ValueError as exc:
        raise ValidationFailed.field(
            "settings", f"{ORG_RATE_LIMIT_SETTING}: {exc} Example: '600 per minute'."
        ) from exc


def organization_limit(settings: dict[str, Any] | None) -> str | None:
    """The organization's valid ``rate_limit``, else None (stored values predate checks)."""
    value = (settings or {}).get(ORG_RATE_LIMIT_SETTING)
    if value is None:
        return None
    try:
        return check_rate_limit(value)
    except ValueError:
        return None


def identity_bucket(actor: Actor) -> str:
    """The per-identity bucket of an authenticated caller: its API key, else its user."""
    if actor.api_key_id is not None:
        return f"key:{actor.api_key_id}"
    return f"user:{actor.user_id}"


def address_bucket(address: str) -> str:
    """The bucket of a caller whose credentials did not verify: its address."""
    return f"ip:{address or 'unknown'}"


def organization_bucket(organization_id: uuid.UUID) -> str:
    """The one bucket every caller of an organization shares."""
    return f"org:{organization_id}"


@dataclass(frozen=True)
class Budget:
    """One limit on one bucket."""

    bucket: str
    limit: RateLimitItem

    @property
    def key(self) -> str:
        """The Redis key of the limit's window for this bucket."""
        return f"{KEY_PREFIX}:{self.limit.key_for(self.bucket)}"


@dataclass(frozen=True)
class Verdict:
    """Whether a call may run, and the limit that answers for it."""

    allowed: bool
    limit: RateLimitItem
    remaining: int
    reset_at: float

    @property
    def retry_after(self) -> int:
        """Whole seconds until the limit's window ends (at least one)."""
        return max(1, math.ceil(self.reset_at - time.time()))


@dataclass(frozen=True)
class Guard:
    """What must hold for a cached actor to be spent for: checked in the spend's round trip."""

    epoch_key: str
    epoch: bytes | str
    revoked_keys: Sequence[str] = ()


@dataclass(frozen=True)
class GuardFailed:
    """Nothing was spent: the credential is revoked, or the actor epoch is now ``epoch``."""

    revoked: bool
    epoch: bytes | str | None = None


class RateLimited(Exception):
    """A budget of the call is used up; retry after ``verdict.retry_after`` seconds."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"Rate limit exceeded ({verdict.limit}); retry in {verdict.retry_after} s")
        self.verdict = verdict


class RateLimiter:
    """Spend calls against the platform's and the organizations' limits, in Redis."""

    def __init__(
        self, redis_url: str, default_limits: str, *, sentinel_master: str | None = None
    ) -> None:
        self._redis = connect(redis_url, sentinel_master=sentinel_master)
        self._spend = self._redis.register_script(_SPEND)
        self._defaults = parse_many(default_limits)

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()

    def budgets(self, actor: Actor | None, address: str) -> list[Budget]:
        """The budgets a call of ``actor`` (None: credentials did not verify) spends."""
        if actor is None:
            return [Budget(address_bucket(address), item) for item in self._defaults]
        identity = identity_bucket(actor)
        budgets = [Budget(identity, item) for item in self._defaults]
        if actor.rate_limit is not None:
            bucket = organization_bucket(actor.organization_id)
            budgets.append(Budget(bucket, parse(actor.rate_limit)))
        return budgets

    def spend(self, budgets: Sequence[Budget], cost: int = 1) -> Verdict | None:
        """Spend ``cost`` requests (a batch's jobs) from every budget, or from none.

        None when Redis is down.
        """
        if not budgets:
            return None
        try:
            result = self._run(budgets, cost, None)
        except redis.RedisError:
            logger.warning("rate-limit storage unavailable; letting the call through")
            return None
        return self._verdict(budgets, result)

    def spend_guarded(
        self, budgets: Sequence[Budget], cost: int, guard: Guard
    ) -> Verdict | GuardFailed | None:
        """Spend as :meth:`spend` does, only if ``guard`` holds, in the same round trip.

        The guard is a credential check, so a Redis outage fails it closed (``Unavailable``)
        where the limit alone would let the call through.
        """
        try:
            result = self._run(budgets, cost, guard)
        except redis.RedisError as exc:
            raise Unavailable("The credential store is unavailable; try again shortly") from exc
        if int(result[0]) == _REVOKED:
            return GuardFailed(revoked=True)
        if int(result[0]) == _EPOCH_MOVED:
            return GuardFailed(revoked=False, epoch=result[1])
        return self._verdict(budgets, result) if budgets else None

    def _run(self, budgets: Sequence[Budget], cost: int, guard: Guard | None) -> Any:
        guard_keys = [guard.epoch_key, *guard.revoked_keys] if guard is not None else []
        args: list[int | bytes | str] = [len(guard_keys), guard.epoch if guard else b"", cost]
        for budget in budgets:
            args += [budget.limit.amount, budget.limit.get_expiry()]
        return self._spend(keys=[*guard_keys, *(budget.key for budget in budgets)], args=args)

    def _verdict(self, budgets: Sequence[Budget], result: Any) -> Verdict:
        now = time.time()
        refused = int(result[0])
        verdicts = [
            Verdict(
                allowed=refused == 0,
                limit=budget.limit,
                remaining=max(0, budget.limit.amount - int(result[1 + 2 * n])),
                reset_at=now + _seconds_left(int(result[2 + 2 * n]), budget.limit),
            )
            for n, budget in enumerate(budgets)
        ]
        if refused:
            return verdicts[refused - 1]
        return min(verdicts, key=lambda v: (v.remaining, v.limit.amount))

    def check(self, actor: Actor | None, address: str, cost: int = 1) -> Verdict | None:
        """Spend a call's budgets; raise ``RateLimited`` when one is used up."""
        verdict = self.spend(self.budgets(actor, address), cost)
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict)
        return verdict


def _seconds_left(pttl: int, limit: RateLimitItem) -> float:
    # A window that does not exist (nothing spent yet) starts with the next call.
    return pttl / 1000 if pttl > 0 else float(limit.get_expiry())
