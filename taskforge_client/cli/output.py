"""How the CLI prints: aligned tables and key/value blocks for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from taskforge_client.models import Job, JobStats, LiveWorker, TaskEvent


def jsonable(obj: Any) -> Any:
    """``obj`` with dataclasses, datetimes and enums turned into JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {item.name: jsonable(getattr(obj, item.name)) for item in dataclasses.fields(obj)}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(key): jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(item) for item in obj]
    return obj


def emit_json(obj: Any, *, compact: bool = False) -> None:
    """Print ``obj`` as JSON (one line when ``compact``, for streams)."""
    if compact:
        click.echo(json.dumps(jsonable(obj), separators=(",", ":")))
    else:
        click.echo(json.dumps(jsonable(obj), indent=2))


def cell(value: Any) -> str:
    """A value as text: local times to the second, JSON for structures, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under headers in aligned columns.

    Hand-written: click has no table helper, and a dozen lines do not justify a
    dependency.
    """
    texts = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in texts]) for i, h in enumerate(headers)]
    for row in [list(headers), *texts]:
        padded = (text.ljust(width) for text, width in zip(row, widths, strict=True))
        click.echo("  ".join(padded).rstrip())


def fields_block(pairs: Sequence[tuple[str, Any]]) -> None:
    """Print ``name: value`` lines with the values aligned."""
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        click.echo(f"{name + ':':<{width + 1}} {cell(value)}")


def job_block(job: Job, stats: JobStats | None = None) -> None:
    """Print a job's fields, its result or error, and its attempts."""
    fields_block(
        [
            ("id", job.id),
            ("queue_id", job.queue_id),
            ("job_type", job.job_type),
            ("status", job.status),
            ("priority", job.priority),
            ("attempts", f"{job.attempt_count} of {job.max_attempts}"),
            ("scheduled_for", job.scheduled_for),
            ("created_at", job.created_at),
            ("started_at", job.started_at),
            ("completed_at", job.completed_at),
            ("payload", job.payload),
            ("result", job.result),
            ("error", job.error),
        ]
    )
    if stats and stats.attempts:
        click.echo()
        table(
            ["ATTEMPT", "STATUS", "WORKER", "STARTED", "SECONDS", "ERROR"],
            [
                [a.number, a.status, a.worker, a.started_at, a.duration_seconds, a.error]
                for a in stats.attempts
            ],
        )


def event_line(event: TaskEvent | LiveWorker) -> str:
    """One line for a live event."""
    if isinstance(event, LiveWorker):
        return f"{cell(event.last_heartbeat)}  worker {event.hostname} {event.status}"
    parts = [
        cell(event.timestamp),
        event.job_id,
        event.job_type,
        event.state,
        f"attempt {event.attempt}",
    ]
    if event.worker:
        parts.append(f"on {event.worker}")
    if event.runtime is not None:
        parts.append(f"{event.runtime:.3f}s")
    if event.error:
        parts.append(f"error: {event.error}")
    return "  ".join(parts)


def status_line(job: Job) -> str:
    """One line for a job's state as read from the API."""
    return f"{cell(job.updated_at)}  {job.id}  {job.job_type}  status {job.status.value}"
