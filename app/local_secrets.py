"""Secrets made once per installation and kept under ``var/secrets/``.

A development install needs a JWT signing key and a metrics token, but no operator
should have to invent them, and no value may be a constant that anyone can read in
this repository.  The first process that asks creates each secret from
:func:`secrets.token_urlsafe`, readable by its owner only; every later process (the API
workers, the gRPC server, ``make run``'s children) reads the same file.  Production
sets them in the environment instead (``app.config``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


def local_secret(directory: Path, name: str) -> str:
    """Return the secret ``directory/name``, creating it on first use."""
    path = directory / name
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
        # A link either creates the file whole or fails because another process won.
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: delete it to have a new secret made")
    return value
