"""The periodic tasks beat sends: each one line into the core.

- ``taskforge.relay`` (every 2 s): publish jobs whose message never left.
- ``taskforge.sweep`` (every 5 s): take over the jobs of dead workers, running
  (lease expired) or held (an ETA or hand-off message unclaimed a lease after due).
- ``taskforge.republish_lost`` (every 30 s): publish again what the broker lost.
- ``taskforge.workers_offline`` (every heartbeat interval): mark silent workers offline.
- ``taskforge.redrive_watch`` (every 2 s): stop dead-letter redrives whose jobs fail again.
- ``taskforge.fold_job_counts`` (every 5 s): fold the job counters' deltas into the counts.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.celery_names import (
    FOLD_JOB_COUNTS,
    REDRIVE_WATCH,
    RELAY,
    REPUBLISH_LOST,
    SWEEP,
    WORKERS_OFFLINE,
)
from app.services import job_counts, leases, outbox, queue_control
from app.services import workers as worker_service
from tasks.celery_app import app
from tasks.worker import runtime

logger = logging.getLogger(__name__)


@app.task(name=RELAY, ignore_result=True)
def relay() -> int:
    """Publish unpublished due jobs."""
    return outbox.relay_unpublished(runtime().database_url)


@app.task(name=REPUBLISH_LOST, ignore_result=True)
def republish_lost() -> int:
    """Publish again the jobs whose message the broker lost."""
    broker = runtime().broker
    return outbox.republish_lost_messages(runtime().database_url, broker.depth, head=broker.head)


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> int:
    """Take over the jobs of dead workers, running or held."""
    lease = timedelta(seconds=runtime().settings.lease_seconds)
    swept = leases.sweep_expired_leases(runtime().database_url)
    return swept + outbox.republish_held_messages(runtime().database_url, after=lease)


@app.task(name=WORKERS_OFFLINE, ignore_result=True)
def workers_offline() -> int:
    """Mark offline the workers that missed three heartbeats in a row."""
    with runtime().session_scope() as session:
        marked = worker_service.mark_silent_workers_offline(
            session, interval=runtime().heartbeat_interval
        )
    if marked:
        logger.warning("offline sweeper: %d silent worker(s) marked offline", marked)
    return marked


@app.task(name=REDRIVE_WATCH, ignore_result=True)
def redrive_watch() -> int:
    """Cancel the waiting jobs of redrives whose jobs fail again."""
    with runtime().session_scope() as session:
        return queue_control.halt_failing_redrives(session)


@app.task(name=FOLD_JOB_COUNTS, ignore_result=True)
def fold_job_counts() -> int:
    """Fold the job counters' pending deltas into the counts."""
    with runtime().session_scope() as session:
        return job_counts.fold(session)
