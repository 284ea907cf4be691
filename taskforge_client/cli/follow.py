"""``taskforge tail``: follow a job or a queue live through the event stream."""

from __future__ import annotations

import time

import click

from taskforge_client.cli import output
from taskforge_client.cli.session import EXIT_JOB_NOT_SUCCEEDED, Session, client_command, find_queue
from taskforge_client.models import Job, JobStatus, Queue, TaskEvent


def _print(session: Session, item: Job | TaskEvent) -> None:
    if session.as_json:
        kind = "job" if isinstance(item, Job) else "task"
        output.emit_json({"event": kind, "data": item}, compact=True)
    elif isinstance(item, Job):
        click.echo(output.status_line(item))
    else:
        click.echo(output.event_line(item))


def _follow_job(session: Session, job_id: str, timeout: float | None) -> None:
    last: Job | None = None
    for item in session.client.jobs.follow(job_id, timeout=timeout):
        _print(session, item)
        if isinstance(item, Job):
            last = item
    if last is not None and last.status is not JobStatus.SUCCEEDED:
        raise click.exceptions.Exit(EXIT_JOB_NOT_SUCCEEDED)


def _follow_queue(session: Session, queue: Queue, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    with session.client.event_feed(kinds=("task",)) as feed:
        while deadline is None or (left := deadline - time.monotonic()) > 0:
            event = feed.get(60.0 if deadline is None else left)
            if isinstance(event, TaskEvent) and event.queue_id == queue.id:
                _print(session, event)


@client_command()
@click.argument("job_id", required=False)
@click.option("--queue", help="Follow every job of this queue (name or id) instead.")
@click.option("--timeout", type=float, help="Stop after this many seconds (a job: exit 5).")
def tail(session: Session, job_id: str | None, queue: str | None, timeout: float | None) -> None:
    """Follow JOB_ID until it ends (exit 4 unless it succeeded), or a queue's task events."""
    if (job_id is None) == (queue is None):
        raise click.UsageError("give a JOB_ID or --queue NAME, not both")
    if job_id is not None:
        _follow_job(session, job_id, timeout)
        return
    found = find_queue(session, str(queue))
    if not session.as_json:
        click.echo(f"following queue {found.name} ({found.id}); Ctrl-C to stop", err=True)
    _follow_queue(session, found, timeout)
