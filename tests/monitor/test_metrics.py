"""GET /api/v1/metrics: Prometheus text that parses, counters that move, scrape auth."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app.api.app import create_app
from app.config import Settings
from app.monitor.events import EventHandler
from app.monitor.lookups import Lookups
from app.services.live_state import LiveState
from tests.conftest import METRICS_AUTH, Account
from tests.support.monitor import submit


def scrape(client: FlaskClient, **headers: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Scrape the endpoint (with the test token unless told otherwise); map samples to values."""
    response = client.get("/api/v1/metrics", headers=headers or METRICS_AUTH)
    assert response.status_code == 200, response.get_data()
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    """One sample's value, 0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_http_requests_are_counted_by_route_template(
    client: FlaskClient, owner: Account, queue: dict[str, Any]
) -> None:
    route = {"method": "GET", "route": "/api/v1/queues/<queue_id>", "status": "200"}
    before = value(scrape(client), "taskforge_http_requests_total", **route)
    for _ in range(2):
        client.get(f"/api/v1/queues/{queue['id']}", headers=owner.headers)
    after = scrape(client)
    assert value(after, "taskforge_http_requests_total", **route) == before + 2
    bucket = {"method": "GET", "route": "/api/v1/queues/<queue_id>", "le": "+Inf"}
    assert value(after, "taskforge_http_request_duration_seconds_bucket", **bucket) >= 2


def test_submitted_jobs_are_counted_by_queue(
    client: FlaskClient, owner: Account, queue: dict[str, Any]
) -> None:
    before = value(scrape(client), "taskforge_jobs_submitted_total", queue=queue["id"])
    submit(client, owner, queue, "echo")
    submit(client, owner, queue, "echo")
    after = scrape(client)
    assert value(after, "taskforge_jobs_submitted_total", queue=queue["id"]) == before + 2
    assert value(after, "taskforge_queue_depth", queue=queue["id"]) == 2


def test_outcomes_and_times_come_from_the_monitor(
    client: FlaskClient, owner: Account, queue: dict[str, Any], settings: Settings
) -> None:
    store = LiveState.from_url(settings.redis_url)
    handler = EventHandler(store, Lookups(settings.database_url))
    try:
        for result in ("'succeeded'", "'retrying'"):
            job = submit(client, owner, queue, "echo")
            base = {"uuid": f"{job['id']}:0", "hostname": "w@h"}
            handler({**base, "type": "task-started", "timestamp": time.time()})
            handler(
                {
                    **base,
                    "type": "task-succeeded",
                    "timestamp": time.time(),
                    "result": result,
                    "runtime": 0.3,
                }
            )
        store.update_worker("w@h", {"status": "online", "last_heartbeat": repr(time.time())})
    finally:
        store.close()
    samples = scrape(client)
    assert value(samples, "taskforge_jobs_succeeded_total", queue=queue["id"]) == 1
    assert value(samples, "taskforge_jobs_retried_total", queue=queue["id"]) == 1
    assert value(samples, "taskforge_jobs_failed_total", queue=queue["id"]) == 0
    assert value(samples, "taskforge_job_run_seconds_count", queue=queue["id"]) == 2
    assert value(samples, "taskforge_job_run_seconds_bucket", queue=queue["id"], le="0.5") == 2
    assert value(samples, "taskforge_job_wait_seconds_count", queue=queue["id"]) == 2
    assert value(samples, "taskforge_worker_online", worker="w@h") == 1


def test_workers_are_counted_by_status(client: FlaskClient, owner: Account) -> None:
    client.post("/api/v1/workers", json={"name": "w"}, headers=owner.headers)
    samples = scrape(client)
    assert value(samples, "taskforge_workers", status="online") == 1
    assert value(samples, "taskforge_workers", status="offline") == 0


def test_a_metrics_token_guards_the_scrape(settings: Settings) -> None:
    client = create_app(settings.replace(metrics_token="s3cret")).test_client()
    assert client.get("/api/v1/metrics").status_code == 401
    wrong = client.get("/api/v1/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert scrape(client, Authorization="Bearer s3cret")
