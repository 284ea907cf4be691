"""The ``taskforge`` command: run the whole system or one process role, migrate, probe.

The client verbs (submit, jobs, job, queues, tail, …) come from ``taskforge_client.cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.config import ConfigError, Settings, load_settings
from app.roles import RUN_ROLES, exec_role
from taskforge_client.cli import register as register_client_verbs

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


def _settings() -> Settings:
    """Load and check the settings; a bad one ends the command with its name, not a traceback."""
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


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

    url = _settings().database_url
    migrate(url, revision)
    click.echo(f"database at {url} is at revision {revision}")


main.add_command(upgrade, "migrate")


@main.group()
def operator() -> None:
    """Platform operators: users who see every tenant in the monitor."""


@operator.command("create")
@click.option("--email", required=True, help="The operator's login email.")
@click.option(
    "--password",
    envvar="TASKFORGE_OPERATOR_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Read from TASKFORGE_OPERATOR_PASSWORD, else asked for.",
)
@click.option(
    "--organization",
    default="Platform operators",
    show_default=True,
    help="Name of the operator's own organization.",
)
def create_operator(email: str, password: str, organization: str) -> None:
    """Create a platform operator (a new organization's owner, flagged as operator)."""
    from app.db import session_scope
    from app.errors import TaskForgeError
    from app.services.auth import create_operator as create

    url = _settings().database_url
    try:
        with session_scope(url) as session:
            made = create(session, email=email, password=password, organization_name=organization)
            user_id, org_id = made.user.id, made.organization.id
    except TaskForgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"operator {email} created (user {user_id}, organization {org_id})")


@main.command()
def api() -> None:
    """Serve the REST API under gunicorn on TASKFORGE_HTTP_BIND."""
    exec_role("api", _settings())


@main.command()
def grpc() -> None:
    """Serve gRPC on TASKFORGE_GRPC_BIND until SIGTERM."""
    exec_role("grpc", _settings())


@main.command(context_settings=PASS_THROUGH)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Celery worker for TaskForge jobs; extra options go to ``celery worker``."""
    exec_role("worker", _settings(), ctx.args)


@main.command()
def beat() -> None:
    """Run Celery beat: the relay and the sweepers."""
    exec_role("beat", _settings())


@main.command()
def monitor() -> None:
    """Consume Celery events for the live views; health on TASKFORGE_MONITOR_BIND."""
    exec_role("monitor", _settings())


@main.command()
@click.argument("role", type=click.Choice(RUN_ROLES))
@click.option("--live", is_flag=True, help="Check liveness only (api, monitor: /healthz).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
@click.option(
    "--max-age", default=30.0, show_default=True, help="beat: seconds since its last tick."
)
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="grpc with TLS: trusted CA file [default: TASKFORGE_GRPC_TLS_CERT].",
)
@click.option("--server-name", help="grpc with TLS: the name the certificate must carry.")
def health(
    role: str, live: bool, timeout: float, max_age: float, ca: Path | None, server_name: str | None
) -> None:
    """Check a role running on this machine, with its own settings; exit 1 when unhealthy."""
    from app.probes import probe

    result = probe(
        role,
        _settings(),
        live=live,
        timeout=timeout,
        max_age=max_age,
        ca=ca,
        server_name=server_name,
    )
    click.echo(f"{role}: {result.detail}", err=not result.ok)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
