"""The composition root: what every TaskForge process builds once, at start, and shares.

Each process main calls :meth:`Runtime.from_settings` with the settings it read
at start: ``app.api.app.create_app`` (the REST API), ``grpc_service.server``, the
Celery worker (``tasks.worker``, on ``worker_init``) and the monitor
(``app.monitor.process``).  Beat builds none: it only sends the periodic tasks.

It wires the core's ports to their adapters (the Celery publisher behind the
outbox, the Celery remote control behind worker control) and holds the shared
clients: the SQL engine and sessions (one pool per process and URL, ``app.db``),
the token service and its Redis blocklist, stream tickets, the rate limiter,
the live-state store the monitor writes, and the broker probe.  Every client
connects lazily, so building the runtime opens no connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from celery import Celery
from sqlalchemy.orm import Session

from app.broker import BrokerProbe
from app.config import Settings
from app.db import session_factory, session_scope
from app.redis_client import connect
from app.services import actor_epoch, outbox, policies
from app.services.actor_cache import ActorCache
from app.services.admission import Gate
from app.services.live_state import LiveState
from app.services.live_view import WorkerControl
from app.services.ratelimit import RateLimiter
from app.services.tickets import StreamTickets
from app.services.tokens import TokenService, TokenStore
from tasks.celery_app import app as celery_app
from tasks.publisher import install
from tasks.remote_control import CeleryWorkerControl


@dataclass(frozen=True)
class Runtime:
    """The shared collaborators of one process."""

    settings: Settings
    tokens: TokenService
    actors: ActorCache
    stream_tickets: StreamTickets
    rate_limiter: RateLimiter | None
    # Authentication and the rate limit in one round trip; None when limits are off.
    gate: Gate | None
    live_state: LiveState
    broker: BrokerProbe
    worker_control: WorkerControl
    publisher: outbox.Publisher

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Build the collaborators and install the outbox's publisher for this process."""
        redis_url, master = settings.redis_url, settings.redis_sentinel_master
        publisher = install(settings.database_url, redis_url, master)
        policies.set_store(policies.PolicyStore.from_url(redis_url, sentinel_master=master))
        actors_redis = connect(redis_url, sentinel_master=master)
        actor_epoch.install(actors_redis)
        actors = ActorCache(actors_redis)
        tokens = TokenService(
            secret=settings.jwt_secret_key,
            store=TokenStore.from_url(redis_url, sentinel_master=master),
            access_lifetime=timedelta(minutes=settings.access_token_minutes),
            refresh_lifetime=timedelta(days=settings.refresh_token_days),
            actors=actors,
        )
        limiter = (
            RateLimiter(redis_url, settings.rate_limit_default, sentinel_master=master)
            if settings.rate_limit_enabled
            else None
        )
        return cls(
            settings=settings,
            tokens=tokens,
            actors=actors,
            stream_tickets=StreamTickets.from_url(redis_url, sentinel_master=master),
            rate_limiter=limiter,
            gate=Gate(tokens, actors, limiter) if limiter is not None else None,
            live_state=LiveState.from_url(redis_url, sentinel_master=master),
            broker=BrokerProbe.from_url(redis_url, sentinel_master=master),
            worker_control=CeleryWorkerControl(),
            publisher=publisher,
        )

    @property
    def database_url(self) -> str:
        """Where SQL is."""
        return self.settings.database_url

    @property
    def heartbeat_interval(self) -> timedelta:
        """How often workers heartbeat: what both edges tell a registering worker."""
        return timedelta(seconds=self.settings.heartbeat_seconds)

    @property
    def celery(self) -> Celery:
        """The Celery app, pointed at this runtime's broker."""
        return celery_app

    def session(self) -> Session:
        """A new session on the process's engine; the caller commits and closes it."""
        return session_factory(self.database_url)()

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """One transaction: committed when the block succeeds, rolled back when it raises."""
        with session_scope(self.database_url) as session:
            yield session

    def close(self) -> None:
        """Close the Redis connections this runtime opened."""
        self.tokens.store.close()
        self.actors.close()
        self.stream_tickets.close()
        self.live_state.close()
        if self.rate_limiter is not None:
            self.rate_limiter.close()
