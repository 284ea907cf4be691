"""Exact job counts per organization, queue and status, read off the summary counters.

Triggers on ``jobs`` keep ``job_counts`` (and, on PostgreSQL, the append-only
``job_count_deltas``) in the transaction that changes a job (migration
``0008_job_counts``).  Counting this way costs a few index rows whatever the
number of jobs; ``COUNT(*)`` over a million jobs costs a million index entries.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Table, delete, func, select, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.db import rowcount
from app.models import JobCount, JobStatus, job_count_deltas

# pg_try_advisory_xact_lock key of the fold ("tfjc"): one fold at a time.
FOLD_LOCK = 0x74666A63
_COUNTS: Table = JobCount.__table__  # type: ignore[assignment]


def count_jobs(
    session: Session,
    organization_id: uuid.UUID,
    *,
    queue_id: uuid.UUID | None = None,
    status: JobStatus | None = None,
) -> dict[JobStatus, int]:
    """Count the organization's jobs per status, of one queue and/or status if given.

    One statement sums the folded counts and the deltas not folded yet, so on
    PostgreSQL a fold committing meanwhile is seen entirely or not at all.
    """
    parts = []
    for table in (_COUNTS, job_count_deltas):
        part = select(table.c.status, table.c.n).where(table.c.organization_id == organization_id)
        if queue_id is not None:
            part = part.where(table.c.queue_id == queue_id)
        if status is not None:
            part = part.where(table.c.status == status)
        parts.append(part)
    rows = union_all(*parts).subquery()
    counts = dict.fromkeys(JobStatus, 0)
    for name, n in session.execute(
        select(rows.c.status, func.sum(rows.c.n)).group_by(rows.c.status)
    ):
        counts[JobStatus(name)] = int(n)
    return counts


def count_fields(counts: dict[JobStatus, int]) -> dict[str, int]:
    """The counts as both edges answer them: ``<status>_count`` each, and ``total_count``."""
    fields = {f"{status.value}_count": n for status, n in counts.items()}
    return {**fields, "total_count": sum(counts.values())}


def fold(session: Session) -> int:
    """Move the pending deltas into ``job_counts`` and drop empty counters; return those changed.

    PostgreSQL only has deltas.  Deleting them and adding their sums happen in
    one statement, and an advisory lock keeps a second fold from running at the
    same time (it returns 0 at once); deltas of transactions not committed yet
    are not visible to the DELETE and wait for the next fold.
    """
    changed = 0
    if session.get_bind().dialect.name == "postgresql":
        if not session.scalar(select(func.pg_try_advisory_xact_lock(FOLD_LOCK))):
            return 0
        key = [_COUNTS.c.organization_id, _COUNTS.c.queue_id, _COUNTS.c.status]
        taken = (
            delete(job_count_deltas)
            .returning(
                job_count_deltas.c.organization_id,
                job_count_deltas.c.queue_id,
                job_count_deltas.c.status,
                job_count_deltas.c.n,
            )
            .cte("taken")
        )
        sums = select(
            taken.c.organization_id, taken.c.queue_id, taken.c.status, func.sum(taken.c.n)
        ).group_by(taken.c.organization_id, taken.c.queue_id, taken.c.status)
        upsert = postgresql.insert(_COUNTS).from_select([*key, _COUNTS.c.n], sums)
        upsert = upsert.on_conflict_do_update(
            index_elements=key, set_={"n": _COUNTS.c.n + upsert.excluded.n}
        )
        changed = rowcount(session, upsert)
    return changed + rowcount(session, delete(_COUNTS).where(_COUNTS.c.n == 0))
