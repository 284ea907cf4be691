"""The client verbs of the ``taskforge`` command (``register`` adds them to its group)."""

from __future__ import annotations

import click

from taskforge_client.cli.commands import COMMANDS


def register(group: click.Group) -> None:
    """Add the client verbs to ``group``."""
    for command in COMMANDS:
        group.add_command(command)
