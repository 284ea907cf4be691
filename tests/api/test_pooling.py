"""The submit path reuses pooled connections: no new broker or database connection per request."""

from __future__ import annotations

from typing import Any

import redis
from flask.testing import FlaskClient
from sqlalchemy import event

from app.config import Settings
from app.db import get_engine
from tests.conftest import Account


def _submit_many(client: FlaskClient, owner: Account, queue: dict, n: int) -> None:
    for i in range(n):
        response = client.post(
            "/api/v1/jobs",
            json={"queue_id": queue["id"], "job_type": "echo", "payload": i},
            headers=owner.headers,
        )
        assert response.status_code == 201


def test_submits_reuse_redis_and_sql_connections(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    _submit_many(client, owner, queue, 5)
    engine = get_engine(settings.database_url)
    connects: list[Any] = []

    def on_connect(*_: Any) -> None:
        connects.append(1)

    with redis.Redis.from_url(settings.redis_url) as admin:
        before = admin.info("clients")["connected_clients"]
        event.listen(engine, "connect", on_connect)
        try:
            _submit_many(client, owner, queue, 50)
        finally:
            event.remove(engine, "connect", on_connect)
        after = admin.info("clients")["connected_clients"]
    assert after - before <= 1, f"Redis clients grew from {before} to {after} over 50 submits"
    assert connects == [], f"{len(connects)} new database connections over 50 submits"
