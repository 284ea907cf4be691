"""/jobs: submit, list, get, cancel, retry, stats."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.config import Settings
from app.db import session_scope
from tests.conftest import Account
from tests.support import factories
from tests.support.execution import execute


def _submit(client: FlaskClient, owner: Account, queue: dict, **body: Any) -> Any:
    return client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo", **body},
        headers=owner.headers,
    )


def test_submit_returns_the_job(client: FlaskClient, owner: Account, queue: dict) -> None:
    response = _submit(
        client, owner, queue, payload={"to": "a@example.com", "n": [1, 2.5, None]}, priority=7
    )
    assert response.status_code == 201
    job = response.json
    assert set(job) == {
        "id",
        "queue_id",
        "job_type",
        "payload",
        "status",
        "priority",
        "max_attempts",
        "attempt_count",
        "scheduled_for",
        "started_at",
        "completed_at",
        "created_at",
        "updated_at",
        "result",
        "error",
    }
    assert job["payload"] == {"to": "a@example.com", "n": [1, 2.5, None]}
    assert (job["status"], job["priority"], job["max_attempts"], job["attempt_count"]) == (
        "pending",
        7,
        3,
        0,
    )
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json == job


def test_submit_by_queue_name(client: FlaskClient, owner: Account, queue: dict) -> None:
    response = client.post(
        "/api/v1/jobs",
        json={"queue_name": queue["name"], "job_type": "echo"},
        headers=owner.headers,
    )
    assert response.status_code == 201
    assert response.json["queue_id"] == queue["id"]


def test_max_attempts_defaults_to_the_queue_setting(client: FlaskClient, owner: Account) -> None:
    queue = client.post(
        "/api/v1/queues", json={"name": "q", "settings": {"max_attempts": 7}}, headers=owner.headers
    ).json
    assert _submit(client, owner, queue).json["max_attempts"] == 7
    assert _submit(client, owner, queue, max_attempts=2).json["max_attempts"] == 2


def test_future_schedule_is_scheduled(client: FlaskClient, owner: Account, queue: dict) -> None:
    job = _submit(client, owner, queue, scheduled_for="2099-05-01T12:00:00+02:00").json
    assert job["status"] == "scheduled"
    assert job["scheduled_for"] == "2099-05-01T10:00:00+00:00"
    past = _submit(client, owner, queue, scheduled_for="2001-01-01T00:00:00Z").json
    assert past["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": -1}, "priority"),
        ({"priority": 10}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"job_type": ""}, "job_type"),
        ({"job_type": "x" * 101}, "job_type"),
        ({"job_type": "has spaces"}, "job_type"),
        ({"scheduled_for": "tomorrow"}, "scheduled_for"),
        ({"scheduled_for": "2099-01-01T00:00:00"}, "scheduled_for"),
        ({"status": "succeeded"}, "status"),
        ({"attempt_count": 3}, "attempt_count"),
        ({"organization_id": "00000000-0000-0000-0000-000000000000"}, "organization_id"),
        ({"queue_id": "not-a-uuid"}, "queue_id"),
    ],
)
def test_submit_validates(
    client: FlaskClient, owner: Account, queue: dict, body: dict, field: str
) -> None:
    response = _submit(client, owner, queue, **body)
    assert response.status_code == 400, response.json
    assert field in response.json["errors"]
    assert client.get("/api/v1/jobs", headers=owner.headers).json["pagination"]["total"] == 0


def test_submit_needs_a_queue(client: FlaskClient, owner: Account) -> None:
    response = client.post("/api/v1/jobs", json={"job_type": "echo"}, headers=owner.headers)
    assert response.status_code == 400
    assert "queue_id" in response.json["errors"]
    unknown = client.post(
        "/api/v1/jobs", json={"job_type": "echo", "queue_name": "nope"}, headers=owner.headers
    )
    assert unknown.status_code == 404


def _advertise(settings: Settings, hostname: str, queue: dict, job_types: list[str]) -> None:
    """Register a live worker of ``queue`` that advertised ``job_types``."""
    with session_scope(settings.database_url) as session:
        factories.runner(session, hostname, f"tf.{queue['id']}", job_types)


def test_a_job_type_no_live_worker_of_the_queue_runs_is_refused(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    # No worker of the queue advertised its job types: TaskForge cannot know.
    assert _submit(client, owner, queue, job_type="send_email").status_code == 201
    _advertise(settings, "plain@h", queue, ["echo", "fail", "flaky", "sleep"])
    refused = _submit(client, owner, queue, job_type="send_email")
    assert refused.status_code == 400, refused.json
    assert refused.json["errors"]["job_type"] == [
        "No live worker of this queue has a handler for 'send_email'; "
        "its workers run: echo, fail, flaky, sleep."
    ]
    assert _submit(client, owner, queue, job_type="echo").status_code == 201
    _advertise(settings, "mailer@h", queue, ["send_email"])
    assert _submit(client, owner, queue, job_type="send_email").status_code == 201


def test_payload_nesting_is_bounded(client: FlaskClient, owner: Account, queue: dict) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    response = _submit(client, owner, queue, payload=deep)
    assert response.status_code == 400
    assert "payload" in response.json["errors"]


def test_idempotency_key_returns_the_same_job(
    client: FlaskClient, owner: Account, queue: dict
) -> None:
    headers = {**owner.headers, "Idempotency-Key": "order-42"}
    body = {"queue_id": queue["id"], "job_type": "echo", "payload": {"order": 42}}
    first = client.post("/api/v1/jobs", json=body, headers=headers)
    second = client.post("/api/v1/jobs", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json["id"] == second.json["id"]
    assert client.get("/api/v1/jobs", headers=owner.headers).json["pagination"]["total"] == 1


def test_idempotency_keys_are_per_organization(
    client: FlaskClient, auth, owner: Account, queue: dict
) -> None:
    other = auth.register("Other")
    other_queue = client.post("/api/v1/queues", json={"name": "q"}, headers=other.headers).json
    mine = client.post(
        "/api/v1/jobs",
        json={"queue_id": queue["id"], "job_type": "echo"},
        headers={**owner.headers, "Idempotency-Key": "k"},
    ).json
    theirs = client.post(
        "/api/v1/jobs",
        json={"queue_id": other_queue["id"], "job_type": "echo"},
        headers={**other.headers, "Idempotency-Key": "k"},
    ).json
    assert mine["id"] != theirs["id"]


def test_list_filters_and_paginates(client: FlaskClient, owner: Account, queue: dict) -> None:
    other = client.post("/api/v1/queues", json={"name": "other"}, headers=owner.headers).json
    ids = [_submit(client, owner, queue).json["id"] for _ in range(3)]
    _submit(client, owner, other)
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=owner.headers)
    everything = client.get("/api/v1/jobs", headers=owner.headers).json
    assert everything["pagination"]["total"] == 4
    by_queue = client.get(f"/api/v1/jobs?queue_id={queue['id']}", headers=owner.headers).json
    assert {j["id"] for j in by_queue["jobs"]} == set(ids)
    cancelled = client.get("/api/v1/jobs?status=cancelled", headers=owner.headers).json
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
    page = client.get(
        f"/api/v1/jobs?queue_id={queue['id']}&limit=2&page=2", headers=owner.headers
    ).json
    assert page["pagination"] == {
        "page": 2,
        "limit": 2,
        "total": 3,
        "pages": 2,
        "next_after": None,
    }
    assert len(page["jobs"]) == 1
    assert client.get("/api/v1/jobs?status=bogus", headers=owner.headers).status_code == 400


def test_list_walks_by_cursor(client: FlaskClient, owner: Account, queue: dict) -> None:
    ids = [_submit(client, owner, queue).json["id"] for _ in range(3)]
    first = client.get("/api/v1/jobs?limit=2", headers=owner.headers).json
    after = first["pagination"]["next_after"]
    rest = client.get(f"/api/v1/jobs?limit=2&after={after}", headers=owner.headers).json
    assert [j["id"] for j in first["jobs"] + rest["jobs"]] == ids[::-1]
    assert rest["pagination"]["next_after"] is None
    assert rest["pagination"]["total"] == 3
    bad = client.get("/api/v1/jobs?after=nonsense", headers=owner.headers)
    assert bad.status_code == 400 and "after" in bad.json["errors"]
    both = client.get(f"/api/v1/jobs?page=2&after={after}", headers=owner.headers)
    assert both.status_code == 400 and "page" in both.json["errors"]


def test_cancel_only_pending_or_scheduled(client: FlaskClient, owner: Account, queue: dict) -> None:
    job = _submit(client, owner, queue).json
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers).status_code == 204
    cancelled = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"]
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers)
    assert again.status_code == 409
    assert again.json == {"error": "A cancelled job cannot be cancelled", "status_code": 409}


def test_cancelled_job_never_runs(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    job = _submit(client, owner, queue).json
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers)
    assert execute(job["id"], 0, "test-worker", settings.database_url) == "dropped"
    assert (
        client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json["status"] == "cancelled"
    )


def test_retry_only_failed_and_keeps_history(
    client: FlaskClient, owner: Account, queue: dict, settings: Settings
) -> None:
    job = _submit(
        client, owner, queue, job_type="fail", payload={"message": "boom"}, max_attempts=1
    ).json
    assert client.post(f"/api/v1/jobs/{job['id']}/retry", headers=owner.headers).status_code == 409
    assert execute(job["id"], 0, "test-worker", settings.database_url) == "failed"
    failed = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
    assert (failed["status"], failed["error"], failed["attempt_count"]) == ("failed", "boom", 1)
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=owner.headers).status_code == 409
    assert client.post(f"/api/v1/jobs/{job['id']}/retry", headers=owner.headers).status_code == 204
    retried = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
    assert (retried["status"], retried["error"], retried["max_attempts"]) == ("pending", None, 2)
    assert execute(job["id"], 1, "test-worker", settings.database_url) == "failed"
    stats = client.get(f"/api/v1/jobs/{job['id']}/stats", headers=owner.headers).json
    assert [a["number"] for a in stats["attempts"]] == [1, 2]
    assert all(a["status"] == "failed" and a["error"] == "boom" for a in stats["attempts"])


def test_job_stats_report_attempts_and_timings(
    client: FlaskClient, owner: Account, settings: Settings
) -> None:
    queue = client.post(
        "/api/v1/queues",
        json={"name": "now", "settings": {"retry_backoff_seconds": 0}},
        headers=owner.headers,
    ).json
    job = _submit(client, owner, queue, job_type="flaky", payload={"failures": 1}).json
    fresh = client.get(f"/api/v1/jobs/{job['id']}/stats", headers=owner.headers).json
    assert (fresh["attempts"], fresh["wait_seconds"], fresh["run_seconds"]) == ([], None, 0)
    assert execute(job["id"], 0, "w1", settings.database_url) == "retrying"
    assert execute(job["id"], 1, "w2", settings.database_url) == "succeeded"
    stats = client.get(f"/api/v1/jobs/{job['id']}/stats", headers=owner.headers).json
    assert stats["status"] == "succeeded"
    first, second = stats["attempts"]
    assert (first["worker"], first["status"], first["error"]) == (
        "w1",
        "failed",
        "flaky failure 1 of 1",
    )
    assert "JobFailed" in first["traceback"]
    assert (second["worker"], second["status"], second["error"]) == ("w2", "succeeded", None)
    assert second["duration_seconds"] >= 0 and stats["wait_seconds"] >= 0
    done = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers).json
    assert done["result"] == {"succeeded_on_attempt": 2}


def test_unknown_job_id_is_404(client: FlaskClient, owner: Account) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    for path in ("", "/stats"):
        assert client.get(f"/api/v1/jobs/{missing}{path}", headers=owner.headers).status_code == 404
    for action in ("cancel", "retry"):
        assert (
            client.post(f"/api/v1/jobs/{missing}/{action}", headers=owner.headers).status_code
            == 404
        )


def test_counts_every_status_of_the_organization_in_one_call(
    client: FlaskClient, auth: Any, owner: Account, queue: dict
) -> None:
    ids = [_submit(client, owner, queue).json["id"] for _ in range(3)]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=owner.headers)
    stranger = auth.register("Stranger")
    theirs = client.post("/api/v1/queues", json={"name": "theirs"}, headers=stranger.headers).json
    _submit(client, stranger, theirs)
    counts = client.get("/api/v1/jobs/counts", headers=owner.headers)
    assert counts.status_code == 200
    assert counts.json == {
        "pending_count": 2,
        "scheduled_count": 0,
        "processing_count": 0,
        "succeeded_count": 0,
        "failed_count": 0,
        "cancelled_count": 1,
        "total_count": 3,
    }
    assert client.get("/api/v1/jobs/counts").status_code == 401
