"""The live state of the cluster in Redis: the monitor process writes it, the API reads it.

Keys, all under ``taskforge:monitor:``:

- ``tasks:<org>`` list, newest first: the organization's last ``RECENT_TASKS`` task items.
- ``events:<org>`` pub/sub channel: ``{"event": "task"|"worker", "data": {...}}``.
- ``workers`` set of Celery nodenames seen; ``worker:<host>`` hash of one's live state
  (heartbeat events and ``inspect``), expiring a day after it was last heard of.
- ``registry`` hash nodename → JSON of its SQL row (id, organization, status), refreshed
  by the monitor every few seconds.
- ``orgs:<host>``, ``active:<org>:<host>`` (sorted set of running task ids, scored by
  start time) and ``counts:<org>:<host>`` (processed, failed): a worker's work seen per
  organization, so a shared worker shows each tenant only its own jobs.
- ``throughput:<queue>:<minute>`` succeeded + failed jobs in that minute, kept 2 hours.
- ``oldest`` hash queue id → epoch since which its longest-waiting due job waits.
- ``jobs`` hash ``<queue>|<state>`` → outcome count, and ``hist:<name>`` hashes of
  histogram buckets, for the Prometheus collector.
- Flower's metric families, per worker and *series* (a job type and queue id pair):
  ``events`` hash ``<host>|<event type>|<series>`` → count; ``prefetched:<host>`` and
  ``executing:<host>`` hashes task id → series (received but not started; started but
  not finished); ``prefetch_time`` hash ``<host>|<series>`` → seconds from received to
  started of the last such task; ``hist:task_run`` keyed ``<host>|<series>``.
  ``series`` is the set of admitted series: at most ``MAX_SERIES``; later ones are
  counted under ``OTHER_SERIES`` so the metrics' cardinality stays bounded.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.client import PubSub

from app.redis_client import connect

PREFIX = "taskforge:monitor:"
RECENT_TASKS = 1000
THROUGHPUT_TTL = 2 * 3600
WORKER_TTL = 24 * 3600
# A worker is offline after this many missed Celery heartbeats (sent every ``freq`` s).
HEARTBEAT_MISSES = 3
MIN_HEARTBEAT_WINDOW = 6.0

TASK_STATES = ("received", "started", "succeeded", "failed", "retried", "revoked", "rejected")
FINISHED = frozenset({"succeeded", "failed", "retried", "revoked", "rejected"})
PROCESSED = frozenset({"succeeded", "failed", "retried"})
ERRORED = frozenset({"failed", "retried"})
THROUGHPUT = frozenset({"succeeded", "failed"})
OUTCOMES = ("succeeded", "failed", "retried")

RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
HISTOGRAMS = {"run": RUN_BUCKETS, "wait": WAIT_BUCKETS, "task_run": RUN_BUCKETS}

# Job type and queue id of a metric series; a unit separator, which no name contains.
SERIES_SEP = "\x1f"
MAX_SERIES = 500
OTHER_SERIES = f"other{SERIES_SEP}other"
RECEIVED_MEMORY = 10_000


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def iso(epoch: float) -> str:
    """Render a Unix time as an ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def minute_of(epoch: float) -> int:
    """The whole minute (Unix minutes) that ``epoch`` falls in."""
    return int(epoch // 60)


@dataclass(frozen=True)
class Histogram:
    """One queue's histogram: counts per upper bound (not cumulative), sum and count."""

    buckets: dict[float, int]
    total: float
    count: int


class LiveState:
    """Reads and writes of the monitor's keys on one Redis connection pool."""

    def __init__(self, client: redis.Redis) -> None:
        # decode_responses=True: every reply is str, which redis-py's types cannot express.
        self.redis: Any = client
        # Writer-side memory of the monitor (the only writer): admitted metric series and
        # when each task was received, for the prefetch time at its start.
        self._series: set[str] | None = None
        self._received: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, *, sentinel_master: str | None = None) -> LiveState:
        """Connect to the Redis at ``url`` (or the master Sentinels name) with short timeouts."""
        return cls(
            connect(url, sentinel_master=sentinel_master, socket_timeout=5, decode_responses=True)
        )

    def close(self) -> None:
        """Close the connections to Redis."""
        self.redis.close()

    # --- writes (the monitor process) -----------------------------------------------

    def pipeline(self) -> Any:
        """A non-transactional pipeline to batch writes in."""
        return self.redis.pipeline(transaction=False)

    def record_task(
        self,
        org: str,
        item: Mapping[str, Any],
        *,
        task_id: str,
        at: float,
        pipe: Any = None,
    ) -> None:
        """Store one task item of ``org``: recent list, counters, histograms, and publish it.

        Given ``pipe``, the writes join it and the caller executes it.
        """
        state = str(item["state"])
        host = item.get("worker") or ""
        queue = str(item["queue_id"])
        own = pipe is None
        pipe = self.pipeline() if own else pipe
        pipe.lpush(_key("tasks", org), json.dumps(item))
        pipe.ltrim(_key("tasks", org), 0, RECENT_TASKS - 1)
        if host:
            pipe.sadd(_key("orgs", host), org)
            pipe.expire(_key("orgs", host), WORKER_TTL)
            active = _key("active", org, host)
            if state == "started":
                pipe.zadd(active, {task_id: at})
                pipe.expire(active, WORKER_TTL)
            elif state in FINISHED:
                pipe.zrem(active, task_id)
            if state in PROCESSED:
                counts = _key("counts", org, host)
                pipe.hincrby(counts, "processed", 1)
                if state in ERRORED:
                    pipe.hincrby(counts, "failed", 1)
                pipe.expire(counts, WORKER_TTL)
        if state in PROCESSED:
            pipe.hincrby(_key("jobs"), f"{queue}|{state}", 1)
            if item.get("runtime") is not None:
                self._observe(pipe, "run", queue, float(item["runtime"]))
        if state in THROUGHPUT:
            counter = _key("throughput", queue, str(minute_of(at)))
            pipe.incr(counter)
            pipe.expire(counter, THROUGHPUT_TTL)
        if host:
            self._flower_metrics(pipe, item, host=host, task_id=task_id, at=at)
        pipe.publish(_key("events", org), json.dumps({"event": "task", "data": item}))
        if own:
            pipe.execute()

    def series(self, job_type: str, queue: str, *, pipe: Any) -> str:
        """The metric series of a job type on a queue: admitted while under ``MAX_SERIES``."""
        if self._series is None:
            self._series = set(self.redis.smembers(_key("series")))
        name = f"{job_type}{SERIES_SEP}{queue}"
        if name in self._series:
            return name
        if len(self._series) >= MAX_SERIES:
            return OTHER_SERIES
        self._series.add(name)
        pipe.sadd(_key("series"), name)
        return name

    def _flower_metrics(
        self, pipe: Any, item: Mapping[str, Any], *, host: str, task_id: str, at: float
    ) -> None:
        """Count what Flower's metric families count, per worker, job type and queue."""
        state = str(item["state"])
        series = self.series(str(item["job_type"]), str(item["queue_id"]), pipe=pipe)
        # Counted as the Celery event type of the state (Flower's ``type`` label).
        pipe.hincrby(_key("events"), f"{host}|task-{state}|{series}", 1)
        prefetched, executing = _key("prefetched", host), _key("executing", host)
        if state == "received":
            self._received[task_id] = at
            if len(self._received) > RECEIVED_MEMORY:
                self._received.popitem(last=False)
            pipe.hset(prefetched, task_id, series)
            pipe.expire(prefetched, WORKER_TTL)
            return
        pipe.hdel(prefetched, task_id)
        if state == "started":
            received = self._received.pop(task_id, None)
            if received is not None:
                pipe.hset(_key("prefetch_time"), f"{host}|{series}", repr(max(at - received, 0.0)))
            pipe.hset(executing, task_id, series)
            pipe.expire(executing, WORKER_TTL)
            return
        pipe.hdel(executing, task_id)
        if state in PROCESSED and item.get("runtime") is not None:
            self._observe(pipe, "task_run", f"{host}|{series}", float(item["runtime"]))

    def count_worker_event(self, host: str, kind: str) -> None:
        """Count a worker event (heartbeat, online, offline) as Flower's events counter does."""
        self.redis.hincrby(_key("events"), f"{host}|{kind}|", 1)

    def observe_wait(self, queue: str, seconds: float, *, pipe: Any = None) -> None:
        """Add a job's wait (submit or due time to first start) to the wait histogram."""
        target = self.pipeline() if pipe is None else pipe
        self._observe(target, "wait", queue, seconds)
        if pipe is None:
            target.execute()

    @staticmethod
    def _observe(pipe: Any, name: str, queue: str, value: float) -> None:
        bound = next((b for b in HISTOGRAMS[name] if value <= b), float("inf"))
        key = _key("hist", name)
        pipe.hincrby(key, f"{queue}|{bound}", 1)
        pipe.hincrbyfloat(key, f"{queue}|sum", max(value, 0.0))
        pipe.hincrby(key, f"{queue}|count", 1)

    def update_worker(self, host: str, fields: Mapping[str, Any]) -> None:
        """Merge live fields into a worker's hash."""
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(_key("workers"), host)
        pipe.hset(_key("worker", host), mapping={"hostname": host, **values})
        pipe.expire(_key("worker", host), WORKER_TTL)
        pipe.execute()

    def add_worker_queue(self, host: str, queue: str) -> list[str]:
        """Record that a worker consumes ``queue`` (it received a job from it); return all."""
        queues = set(json.loads(self.redis.hget(_key("worker", host), "queues") or "[]"))
        queues.add(queue)
        self.update_worker(host, {"queues": sorted(queues)})
        return sorted(queues)

    def worker_offline(self, host: str) -> None:
        """Record a clean worker shutdown: offline, nothing running."""
        orgs = self.redis.smembers(_key("orgs", host))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(_key("worker", host), mapping={"status": "offline", "active": "0"})
        for org in orgs:
            pipe.delete(_key("active", org, host))
        pipe.delete(_key("prefetched", host), _key("executing", host))
        pipe.execute()

    def prune_active(self, host: str, running: Collection[str], before: float) -> None:
        """Drop running-task entries that ``inspect`` no longer reports (lost end events)."""
        for org in self.redis.smembers(_key("orgs", host)):
            key = _key("active", org, host)
            stale = [t for t in self.redis.zrangebyscore(key, "-inf", before) if t not in running]
            if stale:
                self.redis.zrem(key, *stale)
                self.redis.hdel(_key("executing", host), *stale)

    def forget_worker(self, host: str) -> None:
        """Drop a worker whose hash expired from the set of known workers."""
        self.redis.srem(_key("workers"), host)

    def set_registry(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the nodename → SQL row snapshot."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(_key("registry"))
        if rows:
            pipe.hset(_key("registry"), mapping={h: json.dumps(r) for h, r in rows.items()})
        pipe.execute()

    def set_oldest(self, oldest: Mapping[str, float]) -> None:
        """Replace the queue → longest-waiting due job snapshot."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(_key("oldest"))
        if oldest:
            pipe.hset(_key("oldest"), mapping={q: repr(t) for q, t in oldest.items()})
        pipe.execute()

    def publish(self, org: str, event: str, data: Mapping[str, Any]) -> None:
        """Send one event to the organization's live subscribers."""
        self.redis.publish(_key("events", org), json.dumps({"event": event, "data": data}))

    # --- reads (the API, the collector, the monitor itself) ---------------------------

    def recent_tasks(self, org: str) -> list[dict[str, Any]]:
        """The organization's recent task items, newest first."""
        return [json.loads(raw) for raw in self.redis.lrange(_key("tasks", org), 0, -1)]

    def worker_states(self) -> dict[str, dict[str, str]]:
        """Every known worker's live hash, by nodename."""
        hosts = sorted(self.redis.smembers(_key("workers")))
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.hgetall(_key("worker", host))
        return {host: state for host, state in zip(hosts, pipe.execute(), strict=True) if state}

    def worker_state(self, host: str) -> dict[str, str]:
        """One worker's live hash (empty when unknown)."""
        state: dict[str, str] = self.redis.hgetall(_key("worker", host))
        return state

    def known_hosts(self) -> set[str]:
        """Nodenames in the set of known workers (some may have expired)."""
        return set(self.redis.smembers(_key("workers")))

    def registry(self) -> dict[str, dict[str, Any]]:
        """Nodename → the worker's SQL row, as last snapshotted."""
        return {h: json.loads(raw) for h, raw in self.redis.hgetall(_key("registry")).items()}

    def registered(self, host: str) -> dict[str, Any] | None:
        """One worker's SQL row, as last snapshotted; None for an unregistered worker."""
        raw = self.redis.hget(_key("registry"), host)
        return json.loads(raw) if raw else None

    def org_counts(self, org: str, hosts: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """(active, processed, failed) of ``org``'s jobs on each worker."""
        hosts = list(hosts)
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.zcard(_key("active", org, host))
            pipe.hgetall(_key("counts", org, host))
        replies = pipe.execute()
        counts = {}
        for i, host in enumerate(hosts):
            active, totals = replies[2 * i], replies[2 * i + 1]
            counts[host] = (
                int(active),
                int(totals.get("processed", 0)),
                int(totals.get("failed", 0)),
            )
        return counts

    def host_counts(self, host: str) -> tuple[int, int, int]:
        """(active, processed, failed) of every organization's jobs on one worker."""
        per_org = self.org_counts_of_host(host)
        return (
            sum(c[0] for c in per_org.values()),
            sum(c[1] for c in per_org.values()),
            sum(c[2] for c in per_org.values()),
        )

    def org_counts_of_host(self, host: str) -> dict[str, tuple[int, int, int]]:
        """Organization → (active, processed, failed) of its jobs on one worker."""
        return {
            org: self.org_counts(org, [host])[host]
            for org in sorted(self.redis.smembers(_key("orgs", host)))
        }

    def throughput(self, queues: Collection[str], minute: int) -> dict[str, int]:
        """Succeeded + failed jobs of each queue in ``minute``."""
        if not queues:
            return {}
        values = self.redis.mget([_key("throughput", q, str(minute)) for q in queues])
        return {q: int(v or 0) for q, v in zip(queues, values, strict=True)}

    def oldest(self) -> dict[str, float]:
        """Queue id → epoch since which its longest-waiting due job waits."""
        return {q: float(t) for q, t in self.redis.hgetall(_key("oldest")).items()}

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(queue id, outcome) → jobs finished that way since Redis was last emptied."""
        counts = {}
        for field, value in self.redis.hgetall(_key("jobs")).items():
            queue, _, state = field.partition("|")
            counts[(queue, state)] = int(value)
        return counts

    def histograms(self, name: str) -> dict[str, Histogram]:
        """Queue id (``task_run``: host|series) → its ``name`` histogram."""
        raw: dict[str, dict[str, str]] = {}
        for field, value in self.redis.hgetall(_key("hist", name)).items():
            queue, _, part = field.rpartition("|")
            raw.setdefault(queue, {})[part] = value
        result = {}
        for queue, parts in raw.items():
            buckets = {
                float(part): int(value)
                for part, value in parts.items()
                if part not in ("sum", "count")
            }
            result[queue] = Histogram(
                buckets=buckets,
                total=float(parts.get("sum", 0)),
                count=int(parts.get("count", 0)),
            )
        return result

    def event_counts(self) -> dict[tuple[str, str, str], int]:
        """(host, event type, series) → events counted; worker events have an empty series."""
        counts = {}
        for field, value in self.redis.hgetall(_key("events")).items():
            host, kind, series = field.split("|", 2)
            counts[(host, kind, series)] = int(value)
        return counts

    def in_flight(self, kind: str, hosts: Iterable[str]) -> dict[tuple[str, str], int]:
        """(host, series) → tasks ``prefetched`` (received, not started) or ``executing``."""
        hosts = list(hosts)
        pipe = self.redis.pipeline(transaction=False)
        for host in hosts:
            pipe.hvals(_key(kind, host))
        counts: dict[tuple[str, str], int] = {}
        for host, values in zip(hosts, pipe.execute(), strict=True):
            for series in values:
                counts[(host, series)] = counts.get((host, series), 0) + 1
        return counts

    def prefetch_times(self) -> dict[tuple[str, str], float]:
        """(host, series) → seconds the last task waited between received and started."""
        times = {}
        for field, value in self.redis.hgetall(_key("prefetch_time")).items():
            host, _, series = field.partition("|")
            times[(host, series)] = float(value)
        return times

    def subscribe(self, org: str) -> PubSub:
        """A pub/sub subscription to the organization's live events (close it when done)."""
        pubsub: PubSub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(_key("events", org))
        return pubsub


def is_alive(state: Mapping[str, str], now: float | None = None) -> bool:
    """Tell whether a worker's last heartbeat is recent enough and it did not sign off."""
    if state.get("status") == "offline" or not state.get("last_heartbeat"):
        return False
    freq = float(state.get("freq") or 2.0)
    window = max(HEARTBEAT_MISSES * freq, MIN_HEARTBEAT_WINDOW)
    return (now or time.time()) - float(state["last_heartbeat"]) <= window


def worker_queues(state: Mapping[str, str], registered: Mapping[str, Any] | None) -> list[str]:
    """The Celery queues a worker consumes: from ``inspect``, else from its registration."""
    if state.get("queues"):
        return list(json.loads(state["queues"]))
    return list((registered or {}).get("queues") or [])


def worker_facts(state: Mapping[str, str]) -> dict[str, Any]:
    """Host facts from Celery's ``inspect stats``: pool, prefetch and resource usage."""
    pool = json.loads(state["pool"]) if state.get("pool") else {}
    return {
        "pool": {
            "implementation": pool.get("implementation"),
            "max_concurrency": pool.get("max-concurrency"),
            "processes": len(pool["processes"])
            if isinstance(pool.get("processes"), list)
            else None,
            "max_tasks_per_child": pool.get("max-tasks-per-child"),
        },
        "prefetch_count": int(state["prefetch_count"]) if state.get("prefetch_count") else None,
        "rusage": json.loads(state["rusage"]) if state.get("rusage") else None,
        "sw_ver": state.get("sw_ver"),
    }


def registered_tasks(state: Mapping[str, str]) -> list[str] | None:
    """The Celery task names a worker registered (``inspect registered``), if known."""
    return list(json.loads(state["registered"])) if state.get("registered") else None


def worker_view(
    state: Mapping[str, str],
    registered: Mapping[str, Any] | None,
    *,
    org: str | None,
    org_queues: Collection[str],
    counts: tuple[int, int, int],
    now: float | None = None,
) -> dict[str, Any] | None:
    """One worker as ``org`` may see it, or None when it neither is nor serves ``org``'s.

    A worker registered to the organization shows all its queues, its id, the job
    types it runs and the Celery tasks it registered; a shared worker shows only the
    organization's queues and no id.  Counters are always the organization's own
    jobs on that worker.  ``org`` None is a platform operator: every worker in full,
    counters of all jobs.
    """
    queues = worker_queues(state, registered)
    own = org is None or (registered is not None and registered.get("organization_id") == org)
    serving = [q for q in queues if q in org_queues]
    if not own and not serving:
        return None
    alive = is_alive(state, now)
    status = "offline"
    if alive:
        sql_status = (registered or {}).get("status") if own else None
        status = sql_status if sql_status in ("draining", "unhealthy") else "online"
    active, processed, failed = counts
    last = state.get("last_heartbeat")
    return {
        "id": registered["id"] if own and registered else None,
        "hostname": state.get("hostname"),
        "status": status,
        "active": active if alive else 0,
        "processed": processed,
        "failed": failed,
        "pool_size": int(state["pool_size"]) if state.get("pool_size") else None,
        "loadavg": json.loads(state["loadavg"]) if state.get("loadavg") else [],
        "queues": queues if own else serving,
        "last_heartbeat": iso(float(last)) if last else None,
        "worker_type": (registered or {}).get("worker_type") if own else None,
        "organization_id": (registered or {}).get("organization_id") if own else None,
        "job_types": (registered or {}).get("job_types") if own else None,
        "registered_tasks": registered_tasks(state) if own else None,
        **worker_facts(state),
    }
