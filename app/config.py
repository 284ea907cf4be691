"""Configuration read from the environment, with safe development defaults.

Every setting has an environment variable of the same name (``DATABASE_URL``,
``REDIS_URL``, ``JWT_SECRET_KEY`` …).  ``TASKFORGE_ENV=production`` turns on the
checks that refuse an unsafe start (a default or short JWT secret).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TASKFORGE_VAR_DIR", PROJECT_ROOT / "var"))

DEV_JWT_SECRET = "taskforge-development-secret-do-not-use-in-production"


class ConfigError(RuntimeError):
    """The configuration is unsafe or inconsistent; the process must not start."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Settings:
    """Everything TaskForge reads from its environment."""

    env: str = field(default_factory=lambda: _env("TASKFORGE_ENV", "development"))
    database_url: str = field(
        default_factory=lambda: _env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'taskforge.db'}")
    )
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6399/0"))
    jwt_secret_key: str = field(default_factory=lambda: _env("JWT_SECRET_KEY", DEV_JWT_SECRET))
    access_token_minutes: int = field(
        default_factory=lambda: _env_int("TASKFORGE_ACCESS_TOKEN_MINUTES", 15)
    )
    refresh_token_days: int = field(
        default_factory=lambda: _env_int("TASKFORGE_REFRESH_TOKEN_DAYS", 14)
    )
    max_content_length: int = field(
        default_factory=lambda: _env_int("TASKFORGE_MAX_BODY_BYTES", 1024 * 1024)
    )
    http_port: int = field(default_factory=lambda: _env_int("TASKFORGE_HTTP_PORT", 8000))
    grpc_port: int = field(default_factory=lambda: _env_int("TASKFORGE_GRPC_PORT", 50051))
    rate_limit_default: str = field(
        default_factory=lambda: _env("TASKFORGE_RATE_LIMIT", "1200 per minute")
    )
    rate_limit_login: str = field(
        default_factory=lambda: _env("TASKFORGE_RATE_LIMIT_LOGIN", "10 per minute")
    )
    rate_limit_register: str = field(
        default_factory=lambda: _env("TASKFORGE_RATE_LIMIT_REGISTER", "30 per hour")
    )
    rate_limit_enabled: bool = field(
        default_factory=lambda: _env_bool("TASKFORGE_RATE_LIMIT_ENABLED", True)
    )
    lease_seconds: int = field(default_factory=lambda: _env_int("TASKFORGE_LEASE_SECONDS", 30))
    handler_modules: str = field(default_factory=lambda: _env("TASKFORGE_HANDLER_MODULES", ""))

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def validate(self) -> None:
        """Refuse settings that are unsafe for the chosen environment."""
        if self.is_production:
            if self.jwt_secret_key == DEV_JWT_SECRET:
                raise ConfigError("JWT_SECRET_KEY must be set in production")
            if len(self.jwt_secret_key.encode()) < 32:
                raise ConfigError("JWT_SECRET_KEY must be at least 32 bytes in production")
        if self.lease_seconds < 3:
            raise ConfigError("TASKFORGE_LEASE_SECONDS must be at least 3")
        if self.max_content_length <= 0:
            raise ConfigError("TASKFORGE_MAX_BODY_BYTES must be positive")

    def replace(self, **overrides: Any) -> Settings:
        """Return a copy with some settings changed (tests use this)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        return Settings(**values)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply overrides and validate."""
    settings = Settings().replace(**overrides) if overrides else Settings()
    settings.validate()
    return settings
