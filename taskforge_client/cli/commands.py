"""The verbs: login, logout, submit, jobs, job, queues, cancel, retry, tail."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime
from typing import Any

import click

from taskforge_client.cli import output
from taskforge_client.cli.config import update_profile
from taskforge_client.cli.follow import tail
from taskforge_client.cli.session import (
    EXIT_JOB_NOT_SUCCEEDED,
    Session,
    client_command,
    find_queue,
)
from taskforge_client.errors import Unauthenticated
from taskforge_client.models import Job, JobStatus

STATUSES = [status.value for status in JobStatus]


def read_payload(value: str | None) -> Any:
    """A ``--payload``: JSON text, ``@FILE`` or ``@-`` (standard input)."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = click.open_file(value[1:] or "-", encoding="utf-8").read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc


def read_time(value: str | None) -> datetime | None:
    """A ``--scheduled-for`` time in ISO 8601; without an offset it is local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduled-for") from exc
    return moment if moment.tzinfo else moment.astimezone()


def finish(session: Session, job: Job) -> None:
    """Print a finished job; exit 4 unless it succeeded."""
    if session.as_json:
        output.emit_json(job)
    else:
        output.job_block(job)
    if job.status is not JobStatus.SUCCEEDED:
        raise click.exceptions.Exit(EXIT_JOB_NOT_SUCCEEDED)


@client_command()
@click.option("--email", prompt=True, help="Your account's email.")
@click.option("--password", prompt=True, hide_input=True, help="Prompted when not given.")
def login(session: Session, email: str, password: str) -> None:
    """Log in and keep the tokens in the config file's profile."""
    session.client.auth.login(email, password)
    credentials = session.client.credentials
    update_profile(
        session.profile,
        session.config,
        url=session.client.base_url.removesuffix("/api/v1"),
        access_token=credentials.access_token,
        refresh_token=credentials.refresh_token,
        api_key=None,
    )
    if session.as_json:
        output.emit_json({"email": email, "profile": session.profile, "config": session.config})
    else:
        click.echo(f"logged in as {email}; tokens saved to {session.config} ({session.profile})")


@client_command()
def logout(session: Session) -> None:
    """Revoke the profile's tokens and remove them from the config file."""
    if session.client.credentials.access_token:
        # Expired or revoked already: forgetting the tokens is all that is left to do.
        with contextlib.suppress(Unauthenticated):
            session.client.auth.logout()
    update_profile(session.profile, session.config, access_token=None, refresh_token=None)
    if not session.as_json:
        click.echo(f"logged out ({session.profile})")


@client_command()
@click.argument("queue")
@click.argument("job_type")
@click.option("--payload", help="JSON, @FILE, or @- to read standard input.")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9; 9 is most urgent.")
@click.option("--max-attempts", type=click.IntRange(1, 10), help="Default: the queue's.")
@click.option("--scheduled-for", help="ISO 8601 time to run at (no offset: local time).")
@click.option("--idempotency-key", help="Submitting again with this key returns the same job.")
@click.option("--wait", is_flag=True, help="Wait for the end; exit 4 unless it succeeded.")
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Seconds --wait waits."
)
def submit(
    session: Session,
    queue: str,
    job_type: str,
    payload: str | None,
    priority: int | None,
    max_attempts: int | None,
    scheduled_for: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Submit a job of JOB_TYPE to QUEUE (a queue name or id)."""
    body = read_payload(payload)
    when = read_time(scheduled_for)
    try:
        queue_id: str | None = str(uuid.UUID(queue))
    except ValueError:
        queue_id = None
    job = session.client.jobs.submit(
        None if queue_id else queue,
        job_type,
        body,
        queue_id=queue_id,
        priority=priority,
        max_attempts=max_attempts,
        scheduled_for=when,
        idempotency_key=idempotency_key,
    )
    if wait:
        finish(session, session.client.jobs.wait(job, timeout=timeout))
    elif session.as_json:
        output.emit_json(job)
    else:
        click.echo(f"submitted job {job.id} ({job.status.value})")


@client_command()
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this state.")
@click.option("--queue", help="Only jobs of this queue (name or id).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
def jobs(session: Session, status: str | None, queue: str | None, limit: int, page: int) -> None:
    """List jobs, newest first."""
    tf = session.client
    found = tf.jobs.list(
        status=status, queue=find_queue(session, queue) if queue else None, page=page, limit=limit
    )
    if session.as_json:
        output.emit_json(found)
        return
    names = {q.id: q.name for q in tf.queues.iterate()} if found.items else {}
    output.table(
        ["ID", "QUEUE", "TYPE", "STATUS", "ATTEMPTS", "CREATED"],
        [
            [
                j.id,
                names.get(j.queue_id, j.queue_id),
                j.job_type,
                j.status,
                j.attempt_count,
                j.created_at,
            ]
            for j in found.items
        ],
    )
    click.echo(f"page {found.page} of {max(found.pages, 1)}, {found.total} jobs")


@client_command()
@click.argument("job_id")
def job(session: Session, job_id: str) -> None:
    """Show a job with its result or error and its attempts."""
    current = session.client.jobs.get(job_id)
    stats = session.client.jobs.stats(job_id)
    if session.as_json:
        output.emit_json({**output.jsonable(current), "attempts": output.jsonable(stats.attempts)})
    else:
        output.job_block(current, stats)


@client_command()
def queues(session: Session) -> None:
    """List the queues."""
    found = list(session.client.queues.iterate())
    if session.as_json:
        output.emit_json(found)
        return
    output.table(
        ["NAME", "ID", "ACTIVE", "PRIORITY", "DESCRIPTION"],
        [
            [q.name, q.id, "yes" if q.is_active else "paused", q.priority, q.description]
            for q in found
        ],
    )


@client_command()
@click.argument("job_id")
def cancel(session: Session, job_id: str) -> None:
    """Cancel a pending or scheduled job."""
    session.client.jobs.cancel(job_id)
    _show_state(session, job_id, "cancelled")


@client_command()
@click.argument("job_id")
def retry(session: Session, job_id: str) -> None:
    """Run a failed job again with a fresh attempt budget."""
    session.client.jobs.retry(job_id)
    _show_state(session, job_id, "queued again")


def _show_state(session: Session, job_id: str, what: str) -> None:
    current = session.client.jobs.get(job_id)
    if session.as_json:
        output.emit_json(current)
    else:
        click.echo(f"job {current.id} {what} ({current.status.value})")


COMMANDS = [login, logout, submit, jobs, job, queues, cancel, retry, tail]
