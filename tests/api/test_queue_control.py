"""Queue control over REST: purge, dead letters, redrive, bulk actions, explain, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app.broker import step_list
from app.config import Settings
from app.redis_server import RedisProcess
from tasks.publisher import flush_stamps
from tests.conftest import Account, Auth
from tests.support.api import create_queue, submit_job
from tests.support.execution import execute

Call = Callable[[FlaskClient, dict[str, Any], dict[str, str]], Any]


def _failed_job(client: FlaskClient, owner: Account, queue: dict, settings: Settings) -> dict:
    job = submit_job(
        client, owner.headers, queue, job_type="fail", max_attempts=1, payload={"message": "boom"}
    )
    assert execute(job["id"], 0, "w@h", settings.database_url) == "failed"
    return job


@pytest.fixture
def world(client: FlaskClient, owner: Account, settings: Settings) -> dict[str, Any]:
    """A queue with a waiting job and a dead letter."""
    queue = create_queue(client, owner.headers, "ctl")
    world = {
        "queue": queue,
        "waiting": submit_job(client, owner.headers, queue),
        "failed": _failed_job(client, owner, queue, settings),
    }
    flush_stamps()  # publication is stamped off the request path
    return world


def _q(world: dict[str, Any], tail: str) -> str:
    return f"/api/v1/queues/{world['queue']['id']}/{tail}"


ADMIN_ACTIONS: dict[str, Call] = {
    "purge": lambda c, w, h: c.post(_q(w, "purge"), json={"confirm_name": "ctl"}, headers=h),
    "redrive": lambda c, w, h: c.post(
        _q(w, "dead-letters/redrive"), json={"dry_run": False}, headers=h
    ),
    "redrive_dry": lambda c, w, h: c.post(_q(w, "dead-letters/redrive"), json={}, headers=h),
    "bulk_retry": lambda c, w, h: c.post(_q(w, "jobs/bulk-retry"), json={}, headers=h),
    "bulk_cancel": lambda c, w, h: c.post(_q(w, "jobs/bulk-cancel"), json={}, headers=h),
    "audit": lambda c, w, h: c.get("/api/v1/audit", headers=h),
    "policy": lambda c, w, h: c.put(_q(w, "policy"), json={"max_concurrent_jobs": 1}, headers=h),
}
READS: dict[str, Call] = {
    "get_policy": lambda c, w, h: c.get(_q(w, "policy"), headers=h),
    "dead_letters": lambda c, w, h: c.get(_q(w, "dead-letters"), headers=h),
    "explain": lambda c, w, h: c.get(f"/api/v1/jobs/{w['waiting']['id']}/explain", headers=h),
}


@pytest.mark.parametrize("name", sorted(ADMIN_ACTIONS))
@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_act(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, role: str, name: str
) -> None:
    account = auth.member(owner, role)
    response = ADMIN_ACTIONS[name](client, world, account.headers)
    assert response.status_code == 403, response.json
    waiting = client.get(f"/api/v1/jobs/{world['waiting']['id']}", headers=owner.headers).json
    assert waiting["status"] == "pending"
    admin = auth.member(owner, "admin")
    assert ADMIN_ACTIONS[name](client, world, admin.headers).status_code == 200


@pytest.mark.parametrize("name", sorted(READS))
def test_viewers_read(
    client: FlaskClient, auth: Auth, owner: Account, world: dict, name: str
) -> None:
    viewer = auth.member(owner, "viewer")
    assert READS[name](client, world, viewer.headers).status_code == 200


@pytest.mark.parametrize("name", sorted(set(ADMIN_ACTIONS) - {"audit"} | set(READS)))
def test_another_organizations_queue_or_job_is_not_found(
    client: FlaskClient, auth: Auth, world: dict, name: str
) -> None:
    stranger = auth.register("Other")
    response = {**ADMIN_ACTIONS, **READS}[name](client, world, stranger.headers)
    assert response.status_code == 404
    assert response.json["status_code"] == 404


def test_purge_over_rest(client: FlaskClient, owner: Account, world: dict) -> None:
    wrong = client.post(_q(world, "purge"), json={"confirm_name": "CTL"}, headers=owner.headers)
    assert wrong.status_code == 400
    assert "confirm_name" in wrong.json["errors"]
    assert client.post(_q(world, "purge"), json={}, headers=owner.headers).status_code == 400
    purge = client.post(_q(world, "purge"), json={"confirm_name": "ctl"}, headers=owner.headers)
    assert (purge.status_code, purge.json) == (200, {"count": 1})
    again = client.post(_q(world, "purge"), json={"confirm_name": "ctl"}, headers=owner.headers)
    assert again.json == {"count": 0}
    waiting = client.get(f"/api/v1/jobs/{world['waiting']['id']}", headers=owner.headers).json
    assert waiting["status"] == "cancelled"


def test_dead_letters_and_redrive_over_rest(
    client: FlaskClient, owner: Account, world: dict
) -> None:
    letters = client.get(_q(world, "dead-letters"), headers=owner.headers).json
    assert letters["pagination"]["total"] == 1
    [letter] = letters["dead_letters"]
    assert (letter["id"], letter["error"]) == (world["failed"]["id"], "boom")
    assert [a["error"] for a in letter["attempts"]] == ["boom"]
    filtered = client.get(
        _q(world, "dead-letters"), query_string={"error": "nope"}, headers=owner.headers
    ).json
    assert filtered["pagination"]["total"] == 0

    dry = client.post(_q(world, "dead-letters/redrive"), json={}, headers=owner.headers).json
    assert (dry["dry_run"], dry["count"], dry["redrive_id"]) == (True, 1, None)
    assert dry["jobs"][0]["original_id"] == world["failed"]["id"]
    assert dry["jobs"][0]["job_id"] is None
    real = client.post(
        _q(world, "dead-letters/redrive"),
        json={"dry_run": False, "max_per_second": 5},
        headers=owner.headers,
    ).json
    assert (real["dry_run"], real["count"]) == (False, 1)
    new = client.get(f"/api/v1/jobs/{real['jobs'][0]['job_id']}", headers=owner.headers).json
    assert (new["job_type"], new["status"]) == ("fail", "pending")
    assert client.get(_q(world, "dead-letters"), headers=owner.headers).json["dead_letters"] == []

    for bad in ({"max_per_second": 0}, {"stop_after_failures": 0}, {"limit": 5000}, {"x": 1}):
        response = client.post(_q(world, "dead-letters/redrive"), json=bad, headers=owner.headers)
        assert response.status_code == 400, bad


def test_bulk_actions_over_rest(
    client: FlaskClient, owner: Account, world: dict, settings: Settings
) -> None:
    retried = client.post(
        _q(world, "jobs/bulk-retry"), json={"error": "boom"}, headers=owner.headers
    )
    assert retried.json == {"matched": 1, "changed": 1}
    bad = client.post(
        _q(world, "jobs/bulk-retry"), json={"status": ["succeeded"]}, headers=owner.headers
    )
    assert bad.status_code == 400
    cancelled = client.post(
        _q(world, "jobs/bulk-cancel"), json={"job_type": "echo"}, headers=owner.headers
    )
    assert cancelled.json == {"matched": 1, "changed": 1}
    naive = client.post(
        _q(world, "jobs/bulk-cancel"), json={"since": "2026-01-01T00:00:00"}, headers=owner.headers
    )
    assert naive.status_code == 400


def test_explain_over_rest(client: FlaskClient, owner: Account, world: dict) -> None:
    client.post(f"/api/v1/queues/{world['queue']['id']}/pause", headers=owner.headers)
    found = client.get(f"/api/v1/jobs/{world['waiting']['id']}/explain", headers=owner.headers)
    assert found.status_code == 200
    body = found.json
    assert (body["state"], body["status"]) == ("waiting", "pending")
    assert body["blockers"][0]["code"] == "queue_paused"
    assert body["summary"] == body["blockers"][0]["message"]
    finished = client.get(
        f"/api/v1/jobs/{world['failed']['id']}/explain", headers=owner.headers
    ).json
    assert finished["state"] == "finished"
    assert (finished["timings"]["attempts"], finished["timings"]["retries"]) == (1, 0)
    missing = client.get(
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000/explain", headers=owner.headers
    )
    assert missing.status_code == 404


def test_the_audit_trail_lists_who_did_what(
    client: FlaskClient, auth: Auth, owner: Account, world: dict
) -> None:
    admin = auth.member(owner, "admin")
    client.post(f"/api/v1/queues/{world['queue']['id']}/pause", headers=owner.headers)
    client.post(_q(world, "purge"), json={"confirm_name": "ctl"}, headers=admin.headers)
    events = client.get("/api/v1/audit", headers=owner.headers).json
    assert [(e["action"], e["user_id"], e["count"]) for e in events["events"]] == [
        ("queue.purge", admin.user_id, 1),
        ("queue.pause", owner.user_id, None),
    ]
    assert events["events"][0]["target_id"] == world["queue"]["id"]
    only = client.get(
        "/api/v1/audit", query_string={"action": "queue.pause", "limit": 1}, headers=owner.headers
    ).json
    assert [e["action"] for e in only["events"]] == ["queue.pause"]
    assert only["pagination"]["total"] == 1
    bad = client.get("/api/v1/audit", query_string={"action": "drop"}, headers=owner.headers)
    assert bad.status_code == 400
    stranger = auth.register("Other")
    assert client.get("/api/v1/audit", headers=stranger.headers).json["events"] == []


def test_queue_policy_over_rest(client: FlaskClient, owner: Account, world: dict) -> None:
    assert client.get(_q(world, "policy"), headers=owner.headers).json == {}
    policy = {
        "max_dispatches_per_second": 5,
        "burst": 10,
        "job_types": [{"job_type": "sleep", "max_concurrent_jobs": 2}],
    }
    stored = client.put(_q(world, "policy"), json=policy, headers=owner.headers)
    assert stored.status_code == 200
    assert stored.json == {**policy, "max_dispatches_per_second": 5.0}
    for bad in (
        {"max_concurrent_jobs": 0},
        {"max_concurrent_jobs": "2"},
        {"burst": 2},
        {"job_types": [{"job_type": "sleep", "speed": 1}]},
        {"job_types": [{"job_type": "no spaces"}]},
        {"speed": 1},
    ):
        response = client.put(_q(world, "policy"), json=bad, headers=owner.headers)
        assert response.status_code == 400, bad
    events = client.get(
        "/api/v1/audit", query_string={"action": "queue.policy_change"}, headers=owner.headers
    ).json["events"]
    assert [e["details"]["after"]["burst"] for e in events] == [10]


def test_explain_sees_a_message_the_broker_lost(
    client: FlaskClient, owner: Account, world: dict, redis_server: RedisProcess
) -> None:
    url = f"/api/v1/jobs/{world['waiting']['id']}/explain"
    assert "message_lost" not in [
        b["code"] for b in client.get(url, headers=owner.headers).json["blockers"]
    ]
    with redis.Redis.from_url(redis_server.url) as broker:
        broker.flushdb()
    lost = client.get(url, headers=owner.headers).json["blockers"]
    assert [b["code"] for b in lost] == ["no_live_worker", "message_lost"]
    assert lost[1]["details"]["by"] == "republish"


def test_explain_sees_a_message_a_later_one_overtook(
    client: FlaskClient, owner: Account, world: dict, redis_server: RedisProcess
) -> None:
    later = submit_job(client, owner.headers, world["queue"])
    flush_stamps()
    url = f"/api/v1/jobs/{world['waiting']['id']}/explain"
    with redis.Redis.from_url(redis_server.url) as broker:
        # The oldest message leaves the list and nobody claims its job (a worker that
        # fetched it died); the dead letter's message, which ran, goes too. The queue is
        # not empty: a later message waits.
        broker.rpop(step_list(f"tf.{world['queue']['id']}", 9), 2)
    blockers = client.get(url, headers=owner.headers).json["blockers"]
    lost = [b for b in blockers if b["code"] == "message_lost"]
    assert lost and "a later message" in lost[0]["message"]
    later_blockers = client.get(f"/api/v1/jobs/{later['id']}/explain", headers=owner.headers)
    assert "message_lost" not in [b["code"] for b in later_blockers.json["blockers"]]
