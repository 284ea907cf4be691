"""Task records of the live view: what a job carried and returned, redacted and size-capped.

The monitor's task items (``live_state``) say what happened; the record's payload,
result, attempts, exception and traceback are read from SQL when the items are
read, for the caller's organization only, so they are as fresh as the job row.

**Redaction.** Every mapping key matching :data:`SECRET_KEY` (case-insensitive:
password, passwd, secret, token, api_key / api-key / apikey, authorization,
credential, private_key, cookie, session) has its value replaced by
:data:`REDACTED`, at any depth of payload and result.  Exception text and
tracebacks are shown as the job recorded them.

**Size caps.** A redacted payload or result longer than :data:`VALUE_CAP` bytes of
JSON becomes ``{"truncated": true, "bytes": <full size>, "preview": <first
VALUE_CAP characters of the JSON>}``; an exception keeps its first
:data:`EXCEPTION_CAP` characters, a traceback its last :data:`TRACEBACK_CAP` (the
end names the failing line), each marked with ``…`` where cut.
"""

from __future__ import annotations

import json
import re
import statistics
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Job, JobAttempt

SECRET_KEY = re.compile(
    r"passw(or)?d|secret|token|api[_-]?key|authorization|credential|private[_-]?key|cookie|session",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
VALUE_CAP = 4096
EXCEPTION_CAP = 1024
TRACEBACK_CAP = 8192
ELLIPSIS = "…"


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, at any depth."""
    if isinstance(value, dict):
        return {
            key: REDACTED if SECRET_KEY.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def capped(value: Any) -> Any:
    """Redact ``value`` and replace it by a preview when its JSON exceeds ``VALUE_CAP``."""
    clean = redact(value)
    text = json.dumps(clean, separators=(",", ":"), default=str)
    size = len(text.encode())
    if size <= VALUE_CAP:
        return clean
    return {"truncated": True, "bytes": size, "preview": text[:VALUE_CAP]}


def cap_head(text: str | None, limit: int) -> str | None:
    """Keep the first ``limit`` characters of ``text``."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + ELLIPSIS


def cap_tail(text: str | None, limit: int) -> str | None:
    """Keep the last ``limit`` characters of ``text``."""
    if text is None or len(text) <= limit:
        return text
    return ELLIPSIS + text[-limit:]


def with_records(
    session: Session, items: Sequence[dict[str, Any]], *, organization_id: uuid.UUID | None
) -> list[dict[str, Any]]:
    """Add payload, result, attempts, exception and traceback to task items.

    Only jobs of ``organization_id`` are read (None: an operator, every organization);
    an item whose job is gone or belongs elsewhere gets null fields.  Two queries.
    """
    job_ids = {uuid.UUID(item["job_id"]) for item in items}
    jobs: dict[str, Any] = {}
    attempts: dict[tuple[str, int], Any] = {}
    if job_ids:
        query = select(
            Job.id, Job.payload, Job.result, Job.max_attempts, Job.attempt_count, Job.status
        ).where(Job.id.in_(job_ids))
        if organization_id is not None:
            query = query.where(Job.organization_id == organization_id)
        jobs = {str(row.id): row for row in session.execute(query)}
        if jobs:
            rows = session.execute(
                select(
                    JobAttempt.job_id, JobAttempt.number, JobAttempt.error, JobAttempt.traceback
                ).where(JobAttempt.job_id.in_([uuid.UUID(job_id) for job_id in jobs]))
            )
            attempts = {(str(row.job_id), row.number): row for row in rows}
    return [_record(item, jobs.get(item["job_id"]), attempts) for item in items]


def _record(item: dict[str, Any], job: Any, attempts: dict[tuple[str, int], Any]) -> dict[str, Any]:
    attempt = attempts.get((item["job_id"], int(item.get("attempt") or 0)))
    finished = item["state"] in ("succeeded", "failed", "retried", "revoked", "rejected")
    error = item.get("error") or (attempt.error if attempt is not None else None)
    return {
        **item,
        "payload": capped(job.payload) if job is not None else None,
        "result": capped(job.result) if job is not None and item["state"] == "succeeded" else None,
        "max_attempts": job.max_attempts if job is not None else None,
        "retries": max(int(item.get("attempt") or 1) - 1, 0),
        "exception": cap_head(error, EXCEPTION_CAP) if finished else None,
        "traceback": cap_tail(attempt.traceback, TRACEBACK_CAP)
        if attempt is not None and finished
        else None,
    }


def task_types(
    items: Iterable[dict[str, Any]], queue_names: dict[str, str]
) -> list[dict[str, Any]]:
    """Per job type and queue: how many task events ended in each state, and runtime p50/p95.

    Computed over the given recent task items (the monitor keeps the last
    ``live_state.RECENT_TASKS`` per organization), like Flower's task-type view.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        key = (str(item.get("job_type")), str(item.get("queue_id")))
        group = groups.setdefault(key, {"states": {}, "runtimes": []})
        states = group["states"]
        states[item["state"]] = states.get(item["state"], 0) + 1
        if item.get("runtime") is not None and item["state"] in ("succeeded", "failed", "retried"):
            group["runtimes"].append(float(item["runtime"]))
    views = []
    for (job_type, queue_id), group in sorted(groups.items()):
        runtimes = sorted(group["runtimes"])
        views.append(
            {
                "job_type": job_type,
                "queue_id": queue_id,
                "queue": queue_names.get(queue_id),
                "states": dict(sorted(group["states"].items())),
                "runs": len(runtimes),
                "runtime_p50": _percentile(runtimes, 50),
                "runtime_p95": _percentile(runtimes, 95),
            }
        )
    return views


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    # Inclusive method: p50/p95 stay within the observed range for small samples.
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
