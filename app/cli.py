"""The ``taskforge`` command: run the whole system, migrate, start a worker.

The client verbs (submit, jobs, job, queues, tail, …) come from ``taskforge_client.cli``.
"""

from __future__ import annotations

import os
import sys

import click

from app.config import load_settings
from taskforge_client.cli import register as register_client_verbs


@click.group()
def main() -> None:
    """TaskForge: a multi-tenant control plane for Celery job queues."""


register_client_verbs(main)


@main.command()
def run() -> None:
    """Start Redis (if needed), the API, the gRPC server, a worker and beat."""
    from app.runner import run_all

    sys.exit(run_all())


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Apply Alembic migrations to DATABASE_URL."""
    from app.migrate import upgrade as migrate

    url = load_settings().database_url
    migrate(url, revision)
    click.echo(f"database at {url} is at revision {revision}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker for TaskForge jobs; extra options go to ``celery worker``."""
    args = [sys.executable, "-m", "celery", "-A", "tasks.celery_app", "worker", *ctx.args]
    os.execv(sys.executable, args)
