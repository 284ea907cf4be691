"""What every client verb shares: ``--profile/--url/--json``, the client, errors → exit codes.

Exit codes: 0 success; 1 the API refused the request (the message goes to stderr);
2 bad usage; 3 the server could not be reached; 4 a waited-for job ended failed or
cancelled; 5 a wait timed out.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from taskforge_client.cli.config import (
    DEFAULT_PROFILE,
    ConfigError,
    config_path,
    load_profile,
    resolve,
    update_profile,
)
from taskforge_client.client import TaskForge
from taskforge_client.errors import (
    TaskForgeError,
    TransportError,
    Unauthenticated,
    WaitTimeout,
)
from taskforge_client.models import Queue, Tokens

EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 3
EXIT_JOB_NOT_SUCCEEDED = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Session:
    """A verb's client, output mode and profile."""

    client: TaskForge
    as_json: bool
    profile: str
    config: Path


def _saver(profile: str, path: Path) -> Callable[[Tokens], None]:
    """Keep rotated tokens: a refresh token works once, so the stored one must follow."""

    def save(tokens: Tokens) -> None:
        update_profile(
            profile, path, access_token=tokens.access_token, refresh_token=tokens.refresh_token
        )

    return save


@contextmanager
def open_session(profile: str, url: str | None, as_json: bool) -> Iterator[Session]:
    """The client for a profile, with the environment and ``url`` applied."""
    path = config_path()
    resolved = resolve(load_profile(profile, path), url=url)
    client = TaskForge(
        resolved.url,
        token=resolved.token,
        refresh_token=resolved.refresh_token,
        api_key=resolved.api_key,
        on_tokens=_saver(profile, path) if resolved.from_profile else None,
    )
    with client:
        yield Session(client, as_json, profile, path)


def find_queue(session: Session, value: str) -> Queue:
    """The queue a command argument names: by id when it is one, else by name."""
    try:
        queue_id = str(uuid.UUID(value))
    except ValueError:
        return session.client.queues.by_name(value)
    return session.client.queues.get(queue_id)


def fail(
    message: str, code: int = EXIT_API_ERROR, details: dict[str, list[str]] | None = None
) -> NoReturn:
    """Print ``error: message`` (and field details) to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    for field, messages in (details or {}).items():
        click.echo(f"  {field}: {' '.join(str(m) for m in messages)}", err=True)
    raise click.exceptions.Exit(code)


def _report(exc: TaskForgeError) -> NoReturn:
    if isinstance(exc, WaitTimeout):
        fail(exc.message, EXIT_TIMEOUT)
    if isinstance(exc, TransportError):
        fail(f"cannot reach the server: {exc.message}", EXIT_UNREACHABLE)
    if isinstance(exc, Unauthenticated):
        exc.errors.setdefault(
            "hint", ["run `taskforge login`, or set TASKFORGE_TOKEN or TASKFORGE_API_KEY"]
        )
    fail(exc.message, EXIT_API_ERROR, exc.errors)


def client_command(**settings: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """A click command that receives a ``Session`` first and maps API errors to exit codes."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        @click.option(
            "--profile",
            envvar="TASKFORGE_PROFILE",
            default=DEFAULT_PROFILE,
            show_default=True,
            help="Config-file profile to use.",
        )
        @click.option("--url", help="API base URL (default: $TASKFORGE_URL, the profile's).")
        @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
        @functools.wraps(func)
        def run(profile: str, url: str | None, as_json: bool, **kwargs: Any) -> Any:
            try:
                with open_session(profile, url, as_json) as session:
                    return func(session, **kwargs)
            except TaskForgeError as exc:
                _report(exc)
            except ConfigError as exc:
                fail(str(exc))
            except KeyboardInterrupt:
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None

        command: click.Command = click.command(**settings)(run)
        return command

    return decorate
