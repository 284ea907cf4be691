"""Where the CLI finds its server and credentials: flags, the environment, a config file.

Precedence: a command's ``--url``, then ``TASKFORGE_URL``, then the profile's ``url``,
then ``http://127.0.0.1:8000``.  Credentials: ``TASKFORGE_API_KEY`` or
``TASKFORGE_TOKEN`` when set, else the profile's API key or tokens.  The file is TOML
(``$TASKFORGE_CONFIG``, else ``$XDG_CONFIG_HOME/taskforge/config.toml``, else
``~/.config/taskforge/config.toml``), one ``[profiles.NAME]`` table per profile, written
with mode 0600 because it holds secrets::

    [profiles.default]
    url = "http://127.0.0.1:8000"
    access_token = "…"
    refresh_token = "…"
"""

from __future__ import annotations

import os
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Profile:
    """A server and the credentials to use with it."""

    url: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    api_key: str | None = None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file's path."""
    env = os.environ if env is None else env
    if env.get("TASKFORGE_CONFIG"):
        return Path(env["TASKFORGE_CONFIG"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "taskforge" / "config.toml"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


class ConfigError(Exception):
    """The config file cannot be read or written."""


def load_profile(name: str, path: Path) -> Profile:
    """The profile ``name`` of the file at ``path`` (empty when absent)."""
    table = _read(path).get("profiles", {}).get(name, {})
    known = {item.name for item in fields(Profile)}
    return Profile(**{key: str(value) for key, value in table.items() if key in known})


def save_profile(name: str, profile: Profile, path: Path) -> None:
    """Write ``profile`` as ``name``, keeping the other profiles; the file is mode 0600."""
    document = _read(path)
    profiles = document.setdefault("profiles", {})
    profiles[name] = {key: value for key, value in vars(profile).items() if value}
    if not profiles[name]:
        del profiles[name]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write a private temporary file, then rename: the secrets are never world-readable
    # and a crash never leaves half a file.
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as file:
            tomli_w.dump(document, file)
        os.chmod(staging, stat.S_IRUSR | stat.S_IWUSR)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def update_profile(name: str, path: Path, **changes: str | None) -> Profile:
    """Change some fields of profile ``name`` and save it; return the new profile."""
    profile = replace(load_profile(name, path), **changes)
    save_profile(name, profile, path)
    return profile


@dataclass(frozen=True)
class Resolved:
    """What a command connects to: URL, credentials, and whether they are the profile's."""

    url: str
    token: str | None
    refresh_token: str | None
    api_key: str | None
    from_profile: bool


def resolve(
    profile: Profile, *, url: str | None = None, env: Mapping[str, str] | None = None
) -> Resolved:
    """Combine flags, environment and profile by the module's precedence."""
    env = os.environ if env is None else env
    final_url = url or env.get("TASKFORGE_URL") or profile.url or DEFAULT_URL
    if env.get("TASKFORGE_API_KEY") or env.get("TASKFORGE_TOKEN"):
        return Resolved(
            final_url, env.get("TASKFORGE_TOKEN"), None, env.get("TASKFORGE_API_KEY"), False
        )
    return Resolved(final_url, profile.access_token, profile.refresh_token, profile.api_key, True)
