"""Configuration read from the environment, with safe development defaults.

Every setting has an environment variable of the same name (``DATABASE_URL``,
``REDIS_URL``, ``JWT_SECRET_KEY`` …).  ``TASKFORGE_ENV=production`` turns on the
checks that refuse an unsafe start (a missing or short JWT secret, a metrics scrape
that is neither guarded by a token nor explicitly public).

Secrets are never constants.  In development, ``JWT_SECRET_KEY`` and
``TASKFORGE_METRICS_TOKEN`` default to random values made on first run and kept in
``var/secrets/`` (``app.local_secrets``); production must set them.

Request hardening is off by default and opted into per deployment:
``TASKFORGE_TRUSTED_PROXIES`` (how many proxy hops may set ``X-Forwarded-For``)
and ``TASKFORGE_CORS_ORIGINS`` (comma-separated origins allowed to call the API
from a browser, or ``*``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many

from app.local_secrets import local_secret
from app.redis_client import RedisURLError, is_sentinel_url, parse_sentinel_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TASKFORGE_VAR_DIR", PROJECT_ROOT / "var"))
SECRETS_DIR = VAR_DIR / "secrets"
JWT_SECRET_FILE = "jwt_secret_key"
METRICS_TOKEN_FILE = "metrics_token"
JWT_SECRET_MIN_BYTES = 32
WORKER_POOLS = ("prefork", "solo", "threads")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6399/0"
DEFAULT_HEARTBEAT_SECONDS = 10
DEFAULT_SOFT_SHUTDOWN_SECONDS = 30


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


def _env_list(name: str) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def split_bind(name: str, value: str) -> tuple[str, int]:
    """Split a ``host:port`` listen address (``[::]:8000`` for IPv6) or raise ConfigError."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{name} must be host:port, like 0.0.0.0:8000, got {value!r}")
    return host, int(port)


def _check_origin(origin: str) -> None:
    if origin == "*":
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ConfigError(
            f"TASKFORGE_CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com"
        )


@dataclass
class Settings:
    """Everything TaskForge reads from its environment."""

    env: str = field(default_factory=lambda: _env("TASKFORGE_ENV", "development"))
    database_url: str = field(
        default_factory=lambda: _env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'taskforge.db'}")
    )
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", DEFAULT_REDIS_URL))
    # The master's name when REDIS_URL names Sentinels (app/redis_client.py).
    redis_sentinel_master: str = field(
        default_factory=lambda: _env("TASKFORGE_REDIS_SENTINEL_MASTER", "")
    )
    # Empty means "not configured": development then uses var/secrets/ (__post_init__).
    jwt_secret_key: str = field(default_factory=lambda: _env("JWT_SECRET_KEY", ""))
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
    # Process roles (docs/deployment.md).  An empty bind means 127.0.0.1 on the port above.
    http_bind_address: str = field(default_factory=lambda: _env("TASKFORGE_HTTP_BIND", ""))
    http_workers: int = field(default_factory=lambda: _env_int("TASKFORGE_HTTP_WORKERS", 2))
    http_threads: int = field(default_factory=lambda: _env_int("TASKFORGE_HTTP_THREADS", 8))
    http_graceful_seconds: int = field(
        default_factory=lambda: _env_int("TASKFORGE_HTTP_GRACEFUL_SECONDS", 30)
    )
    grpc_bind_address: str = field(default_factory=lambda: _env("TASKFORGE_GRPC_BIND", ""))
    grpc_tls_cert: str = field(default_factory=lambda: _env("TASKFORGE_GRPC_TLS_CERT", ""))
    grpc_tls_key: str = field(default_factory=lambda: _env("TASKFORGE_GRPC_TLS_KEY", ""))
    monitor_bind: str = field(
        default_factory=lambda: _env("TASKFORGE_MONITOR_BIND", "127.0.0.1:8001")
    )
    worker_name: str = field(default_factory=lambda: _env("TASKFORGE_WORKER_NAME", "taskforge@%h"))
    worker_pool: str = field(default_factory=lambda: _env("TASKFORGE_WORKER_POOL", "prefork"))
    worker_concurrency: int = field(
        default_factory=lambda: _env_int("TASKFORGE_WORKER_CONCURRENCY", 2)
    )
    worker_soft_shutdown_seconds: int = field(
        default_factory=lambda: _env_int(
            "TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS", DEFAULT_SOFT_SHUTDOWN_SECONDS
        )
    )
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
    task_modules: str = field(default_factory=lambda: _env("TASKFORGE_TASK_MODULES", ""))
    trusted_proxies: int = field(default_factory=lambda: _env_int("TASKFORGE_TRUSTED_PROXIES", 0))
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: _env_list("TASKFORGE_CORS_ORIGINS")
    )
    # Monitoring (docs/monitoring.md).
    heartbeat_seconds: int = field(
        default_factory=lambda: _env_int("TASKFORGE_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS)
    )
    drain_shutdown: bool = field(
        default_factory=lambda: _env_bool("TASKFORGE_DRAIN_SHUTDOWN", False)
    )
    monitor_inspect_seconds: int = field(
        default_factory=lambda: _env_int("TASKFORGE_MONITOR_INSPECT_SECONDS", 10)
    )
    sse_max_seconds: int = field(default_factory=lambda: _env_int("TASKFORGE_SSE_MAX_SECONDS", 30))
    sse_keepalive_seconds: int = field(
        default_factory=lambda: _env_int("TASKFORGE_SSE_KEEPALIVE_SECONDS", 10)
    )
    sse_max_streams: int = field(default_factory=lambda: _env_int("TASKFORGE_SSE_MAX_STREAMS", 4))
    metrics_token: str = field(default_factory=lambda: _env("TASKFORGE_METRICS_TOKEN", ""))
    # Scraping without a token is an explicit choice, never a default.
    metrics_public: bool = field(
        default_factory=lambda: _env_bool("TASKFORGE_METRICS_PUBLIC", False)
    )

    def __post_init__(self) -> None:
        """Fill unset development secrets from ``var/secrets/``, made on first use."""
        if self.is_production:
            return
        if not self.jwt_secret_key:
            self.jwt_secret_key = local_secret(SECRETS_DIR, JWT_SECRET_FILE)
        if not self.metrics_token and not self.metrics_public:
            self.metrics_token = local_secret(SECRETS_DIR, METRICS_TOKEN_FILE)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def http_bind(self) -> str:
        """Where the API listens: ``TASKFORGE_HTTP_BIND``, else 127.0.0.1 on the HTTP port."""
        return self.http_bind_address or f"127.0.0.1:{self.http_port}"

    @property
    def grpc_bind(self) -> str:
        """Where gRPC listens: ``TASKFORGE_GRPC_BIND``, else 127.0.0.1 on the gRPC port."""
        return self.grpc_bind_address or f"127.0.0.1:{self.grpc_port}"

    def validate(self) -> None:
        """Refuse settings that are unsafe for the chosen environment."""
        if not self.jwt_secret_key:
            raise ConfigError("JWT_SECRET_KEY must be set in production")
        if self.is_production:
            if len(self.jwt_secret_key.encode()) < JWT_SECRET_MIN_BYTES:
                raise ConfigError(
                    f"JWT_SECRET_KEY must be at least {JWT_SECRET_MIN_BYTES} bytes in production"
                )
            if not self.metrics_token and not self.metrics_public:
                raise ConfigError(
                    "Set TASKFORGE_METRICS_TOKEN (Prometheus' bearer token) in production, "
                    "or TASKFORGE_METRICS_PUBLIC=true to allow scraping without one"
                )
        if self.lease_seconds < 3:
            raise ConfigError("TASKFORGE_LEASE_SECONDS must be at least 3")
        if self.max_content_length <= 0:
            raise ConfigError("TASKFORGE_MAX_BODY_BYTES must be positive")
        if not 0 <= self.trusted_proxies <= 10:
            raise ConfigError("TASKFORGE_TRUSTED_PROXIES must be a hop count from 0 to 10")
        for origin in self.cors_origins:
            _check_origin(origin)
        if self.heartbeat_seconds < 1 or self.monitor_inspect_seconds < 1:
            raise ConfigError("Heartbeat and monitor intervals must be at least 1 second")
        if not 1 <= self.sse_keepalive_seconds <= self.sse_max_seconds <= 300:
            raise ConfigError("Need 1 <= TASKFORGE_SSE_KEEPALIVE_SECONDS <= _MAX_SECONDS <= 300")
        if self.sse_max_streams < 1:
            raise ConfigError("TASKFORGE_SSE_MAX_STREAMS must be at least 1")
        self._validate_roles()
        if is_sentinel_url(self.redis_url):
            try:
                parse_sentinel_url(self.redis_url, self.redis_sentinel_master)
            except RedisURLError as exc:
                raise ConfigError(str(exc)) from exc
        for name in ("rate_limit_default", "rate_limit_login", "rate_limit_register"):
            try:
                parse_many(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{name} is not a rate limit like '100 per minute'") from exc

    def _validate_roles(self) -> None:
        for name, port in (
            ("TASKFORGE_HTTP_PORT", self.http_port),
            ("TASKFORGE_GRPC_PORT", self.grpc_port),
        ):
            if not 0 < port < 65536:
                raise ConfigError(f"{name} must be a TCP port number, got {port}")
        split_bind("TASKFORGE_HTTP_BIND", self.http_bind)
        split_bind("TASKFORGE_GRPC_BIND", self.grpc_bind)
        split_bind("TASKFORGE_MONITOR_BIND", self.monitor_bind)
        for name, count in (
            ("TASKFORGE_HTTP_WORKERS", self.http_workers),
            ("TASKFORGE_HTTP_THREADS", self.http_threads),
            ("TASKFORGE_HTTP_GRACEFUL_SECONDS", self.http_graceful_seconds),
            ("TASKFORGE_WORKER_CONCURRENCY", self.worker_concurrency),
        ):
            if count < 1:
                raise ConfigError(f"{name} must be at least 1, got {count}")
        if bool(self.grpc_tls_cert) != bool(self.grpc_tls_key):
            raise ConfigError(
                "Set both TASKFORGE_GRPC_TLS_CERT and TASKFORGE_GRPC_TLS_KEY, or neither"
            )
        if self.worker_pool not in WORKER_POOLS:
            raise ConfigError(f"TASKFORGE_WORKER_POOL must be one of {', '.join(WORKER_POOLS)}")
        if not self.worker_name or "@" not in self.worker_name:
            raise ConfigError("TASKFORGE_WORKER_NAME must be a Celery nodename like taskforge@%h")
        if self.worker_soft_shutdown_seconds < 0:
            raise ConfigError("TASKFORGE_WORKER_SOFT_SHUTDOWN_SECONDS must not be negative")

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
